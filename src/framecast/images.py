"""Turn untrusted image bytes into one RGB picture, refusing anything else with a clear message."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied, fully loaded
    format: str  # one of SUPPORTED_FORMATS
    width: int  # after orientation
    height: int


def decode_image(data: bytes, *, max_pixels: int = 40_000_000) -> DecodedImage:
    """Decode ``data`` (first frame of animations) to RGB, or raise :class:`InputError`."""
    if not data:
        raise _not_decodable("the image is empty (0 bytes); send the image file itself.")
    try:
        with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as opened:
            # Opening reads only the header: check the size before any pixel memory is allocated.
            _check_pixels(opened.size, max_pixels)
            # Cameras write MPO: a JPEG with more pictures appended. The first is a plain JPEG.
            image_format = "JPEG" if opened.format == "MPO" else str(opened.format)
            opened.load()
            image = _to_rgb(ImageOps.exif_transpose(opened))
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
                code="image_truncated",
            ) from None
        raise _not_decodable(
            f"the {_signature(data) or 'image'} data is corrupt and cannot be decoded ({exc}); "
            "re-export the image and try again."
        ) from None
    return DecodedImage(image=image, format=image_format, width=image.width, height=image.height)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    if size[0] * size[1] > max_pixels:
        raise _too_many_pixels(size, max_pixels)


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> InputError:
    actual = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    return InputError(
        f"the image is {actual}, more than the limit of {max_pixels:,} pixels; "
        "scale it down and try again.",
        code="image_too_many_pixels",
    )


def _not_decodable(message: str) -> InputError:
    return InputError(message, code="image_not_decodable")


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
