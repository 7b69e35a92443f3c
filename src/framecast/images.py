"""Turn untrusted image bytes into one RGB picture, refusing anything else with a clear message."""

from __future__ import annotations

import ctypes
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from framecast.contract.errors import ErrorCode
from framecast.errors import InputError

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
_SUPPORTED_TEXT = "JPEG, PNG, WebP, GIF or BMP"

# Transparent pixels become white: transparent images are mostly logos and cut-out products made
# to sit on a light page, and dark artwork on a black background would vanish.
_BACKGROUND = (255, 255, 255, 255)

# What Pillow raises for data it cannot make sense of, besides OSError.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError)

# Enough of each supported format's signature to say "this is a broken PNG", not "not an image".
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}


# Pillow modes whose channels are wider than a byte (PNGs are read off their raw mode instead).
_WIDE_CHANNELS = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}

# Pillow decodes WebP through libwebp's animation decoder, which fills two RGBA canvases.
_WEBP_BYTES_PER_PIXEL = 2 * 4

_MB = 1_000_000
_T = TypeVar("_T")


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied, fully loaded
    format: str  # one of SUPPORTED_FORMATS
    width: int  # after orientation
    height: int


@dataclass(frozen=True)
class CheckedImage:
    """What :func:`check_image` learnt about an image: no pixels are kept."""

    format: str  # one of SUPPORTED_FORMATS
    width: int  # as stored, before EXIF orientation
    height: int
    decode_bytes: int  # see decode_cost


def decode_cost(image: Image.Image) -> int:
    """Bytes an opened (not yet loaded) image takes once decoded, read from its header alone:
    width x height x channels x bytes per channel (WebP: 8 bytes per pixel, libwebp's two RGBA
    canvases)."""
    width, height = image.size
    if image.format == "WEBP":
        return width * height * _WEBP_BYTES_PER_PIXEL
    channels, depth = _channels_and_depth(image)
    return width * height * channels * depth


def _channels_and_depth(image: Image.Image) -> tuple[int, int]:
    # A PNG's raw mode says what the file holds ("RGBA;16B", "LA;16B", "I;16B"); Pillow opens
    # 16-bit colour as 8-bit modes, and 16-bit grey with alpha as RGBA.
    raw_mode = _raw_mode(image) if image.format == "PNG" else ""
    base, _, bits = raw_mode.partition(";")
    try:
        channels = Image.getmodebands(base)
    except (KeyError, ValueError):
        return len(image.getbands()), _WIDE_CHANNELS.get(image.mode, 1)
    return channels, 2 if bits.startswith("16") else 1


def _raw_mode(image: Image.Image) -> str:
    tile = image.tile if isinstance(image, ImageFile.ImageFile) else []
    args = tile[0].args if tile else None
    return args if isinstance(args, str) else ""


def decode_image(
    data: bytes, *, max_pixels: int = 40_000_000, max_decode_bytes: int | None = None
) -> DecodedImage:
    """Decode ``data`` (first frame of animations) to RGB, or raise :class:`InputError`."""

    def decode(opened: Image.Image, image_format: str) -> DecodedImage:
        opened.load()
        image = _to_rgb(ImageOps.exif_transpose(opened))
        return DecodedImage(
            image=image, format=image_format, width=image.width, height=image.height
        )

    return _decode(data, max_pixels, max_decode_bytes, decode)


def check_image(
    data: bytes, *, max_pixels: int = 40_000_000, max_decode_bytes: int | None = None
) -> CheckedImage:
    """Decode ``data`` to find out whether it is a whole, usable image, as :func:`decode_image`
    would, but keep none of it: what the API does at submit (the worker decodes it again).

    JPEGs are decoded at an eighth of their size (every byte of the file is still read), and the
    memory freed afterwards is handed back to the system, so one large image does not leave the
    process larger for good.
    """

    def check(opened: Image.Image, image_format: str) -> CheckedImage:
        width, height = opened.size
        cost = decode_cost(opened)
        if image_format == "JPEG":
            opened.draft(None, (max(1, width // 8), max(1, height // 8)))
        opened.load()
        opened.getexif().get(ExifTags.Base.Orientation)  # what exif_transpose reads
        return CheckedImage(format=image_format, width=width, height=height, decode_bytes=cost)

    try:
        return _decode(data, max_pixels, max_decode_bytes, check)
    finally:
        release_free_memory()


def _decode(
    data: bytes,
    max_pixels: int,
    max_decode_bytes: int | None,
    use: Callable[[Image.Image, str], _T],
) -> _T:
    """Open ``data``, check its size from the header, and hand it to ``use``; Pillow's errors
    become :class:`InputError` with a message that says what is wrong."""
    if not data:
        raise _not_decodable("the image is empty (0 bytes); send the image file itself.")
    try:
        with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as opened:
            # Opening reads only the header: check the size before any pixel memory is allocated.
            _check_pixels(opened.size, max_pixels)
            if max_decode_bytes is not None:
                _check_decode_bytes(opened, max_decode_bytes)
            # Cameras write MPO: a JPEG with more pictures appended. The first is a plain JPEG.
            image_format = "JPEG" if opened.format == "MPO" else str(opened.format)
            return use(opened, image_format)
    # Pillow's own guard runs inside open(): an error above ~179 MP, a warning above ~89 MP. The
    # warning only arrives as an exception when warnings are errors; turning that on here would
    # change process-wide state, and the explicit check above covers the default limit anyway.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(None, max_pixels) from None
    except UnidentifiedImageError:
        raise _not_decodable(_describe_unsupported(data)) from None
    except _DECODE_ERRORS as exc:
        if "truncated" in str(exc).lower():
            raise InputError(
                "the image file is cut short (truncated); upload the complete file.",
                code=ErrorCode.IMAGE_TRUNCATED,
            ) from None
        raise _not_decodable(
            f"the {_signature(data) or 'image'} data is corrupt and cannot be decoded ({exc}); "
            "re-export the image and try again."
        ) from None


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    if size[0] * size[1] > max_pixels:
        raise _too_many_pixels(size, max_pixels)


def _check_decode_bytes(opened: Image.Image, max_decode_bytes: int) -> None:
    cost = decode_cost(opened)
    if cost <= max_decode_bytes:
        return
    width, height = opened.size
    if opened.format == "WEBP":
        what = f"a {width}x{height} WebP ({_WEBP_BYTES_PER_PIXEL} bytes per pixel to decode)"
        fix = "scale it down, or send it as JPEG or PNG"
    else:
        channels, depth = _channels_and_depth(opened)
        what = f"{width}x{height} pixels with {channels} channel{'s' * (channels > 1)} of {8 * depth} bits"
        fix = "scale it down" + (", or save it with 8 bits per channel" if depth > 1 else "")
    raise InputError(
        f"the image is {what}: {_mb(cost)} once decoded, more than this server's "
        f"limit of {_mb(max_decode_bytes)}; {fix}, and try again.",
        code=ErrorCode.IMAGE_TOO_LARGE_TO_DECODE,
    )


def _mb(size: int) -> str:
    return f"{size / _MB:,.0f} MB" if size >= 10 * _MB else f"{size / _MB:.2g} MB"


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> InputError:
    actual = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    return InputError(
        f"the image is {actual}, more than the limit of {max_pixels:,} pixels; "
        "scale it down and try again.",
        code=ErrorCode.IMAGE_TOO_MANY_PIXELS,
    )


def _not_decodable(message: str) -> InputError:
    return InputError(message, code=ErrorCode.IMAGE_NOT_DECODABLE)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I"):
        # 16-bit greyscale PNGs: a plain convert() would clip everything above 255 to white.
        high_byte = np.asarray(image, dtype=np.uint32) >> 8
        image = Image.fromarray(np.clip(high_byte, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        background = Image.new("RGBA", image.size, _BACKGROUND)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None elsewhere (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_free_memory() -> None:
    """Give the memory the process has freed back to the system.

    glibc keeps freed blocks of up to 32 MB (Pillow allocates images in 16 MB blocks) inside the
    heap of the thread that freed them, so after decoding a large image in a worker thread the
    process stays that much larger for good; malloc_trim returns those pages.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _signature(data: bytes) -> str | None:
    if data[8:12] == b"WEBP" and data[:4] == b"RIFF":
        return "WEBP"
    return next((fmt for sig, fmt in _SIGNATURES.items() if data.startswith(sig)), None)


def _describe_unsupported(data: bytes) -> str:
    """Say what the data seems to be, so the user knows what to fix."""
    start = data[:512].lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return (
            "image_url returned a web page (HTML), not an image; "
            f"link to the {_SUPPORTED_TEXT} file itself."
        )
    if start.startswith((b"<svg", b"<?xml")):
        return f"SVG/XML images are not supported; convert it to {_SUPPORTED_TEXT}."
    if start.startswith(b"%pdf"):
        return f"PDF files are not supported; convert the page to {_SUPPORTED_TEXT}."
    known = _signature(data)
    if known is not None:
        return (
            f"the data starts like a {known} file but cannot be read; "
            "it is probably cut short or corrupt. Upload the complete file."
        )
    other = _identify_any(data)
    if other is not None:
        return f"{other} images are not supported; convert it to {_SUPPORTED_TEXT}."
    return f"the data is not an image Framecast can read; send a {_SUPPORTED_TEXT} file."


def _identify_any(data: bytes) -> str | None:
    """The format name any Pillow plugin gives ``data``; only its header is parsed."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # any failure just means "unknown"
        return None


def cover_fit(
    image: Image.Image,
    width: int,
    height: int,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Image.Image:
    """``image`` cropped around its centre to ``width:height`` and resized to exactly that size.

    Nothing is letterboxed or stretched: the part of the image outside the target aspect ratio
    is cut off, as the official HunyuanVideo-I2V code does (resize, then centre crop).
    """
    iw, ih = image.size
    aspect = width / height
    if iw / ih > aspect:
        cw = ih * aspect
        box = ((iw - cw) / 2, 0.0, (iw + cw) / 2, float(ih))
    else:
        ch = iw / aspect
        box = (0.0, (ih - ch) / 2, float(iw), (ih + ch) / 2)
    return image.resize((width, height), resample=resample, box=box)
