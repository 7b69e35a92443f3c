"""Decoding untrusted image bytes: formats, orientation, colour modes and hostile input."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from framecast.errors import InputError
from framecast.images import SUPPORTED_FORMATS, check_image, decode_cost, decode_image
from framecast.settings import Settings


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    # Noise does not compress, so cutting the file short really cuts pixel data.
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def pixel_loads(monkeypatch: pytest.MonkeyPatch) -> list[ImageFile.ImageFile]:
    """Every image whose pixels were decoded (PIL's ``load``), recorded as it happens."""
    loads: list[ImageFile.ImageFile] = []
    original = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> object:
        loads.append(self)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return loads


def decode_error(data: bytes, **kwargs: int) -> InputError:
    with pytest.raises(InputError) as caught:
        decode_image(data, **kwargs)
    assert caught.value.status == 422
    return caught.value


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_supported_formats_decode_to_rgb(fmt: str) -> None:
    decoded = decode_image(encode(Image.new("RGB", (40, 30), (200, 30, 10)), fmt))
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (40, 30)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (40, 30)
    red, green, blue = decoded.image.getpixel((20, 15))  # type: ignore[misc]
    assert red > 150 and green < 80 and blue < 80


def test_animated_gif_gives_the_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 2
    decoded = decode_image(data)
    assert decoded.image.getpixel((8, 8)) == (255, 0, 0)


def test_animated_webp_gives_the_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in [(0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    decoded = decode_image(data)
    assert decoded.format == "WEBP"
    assert decoded.image.getpixel((8, 8)) == (0, 255, 0)


def test_multi_picture_jpeg_is_a_jpeg() -> None:
    first, second = Image.new("RGB", (20, 10), (255, 0, 0)), Image.new("RGB", (20, 10), (0, 0, 255))
    decoded = decode_image(encode(first, "MPO", save_all=True, append_images=[second]))
    assert decoded.format == "JPEG"
    red, _, blue = decoded.image.getpixel((5, 5))  # type: ignore[misc]
    assert red > 200 and blue < 50


def test_exif_orientation_6_is_applied() -> None:
    source = Image.new("RGB", (60, 20), (0, 0, 0))
    source.paste((255, 255, 255), (0, 0, 10, 20))  # white strip on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = decode_image(encode(source, "JPEG", exif=exif.tobytes(), quality=95))
    assert (decoded.width, decoded.height) == (20, 60)
    assert decoded.image.size == (20, 60)
    # The left edge of the stored picture ends up at the top once rotated clockwise.
    assert sum(decoded.image.getpixel((10, 2))) > 600  # type: ignore[arg-type]
    assert sum(decoded.image.getpixel((10, 57))) < 60  # type: ignore[arg-type]


def test_transparency_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((0, 0)) == (255, 0, 0)
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("P", "PNG"), ("P", "GIF"), ("LA", "PNG"), ("L", "PNG"), ("1", "BMP"), ("CMYK", "JPEG")],
)
def test_other_modes_become_rgb(mode: str, fmt: str) -> None:
    decoded = decode_image(encode(Image.new("RGB", (12, 10), (0, 128, 255)).convert(mode), fmt))
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (12, 10)


def test_palette_with_transparency_is_flattened() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    decoded = decode_image(encode(image, "PNG", transparency=0))
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.image.getpixel((1, 1)) == (0, 255, 0)


def test_16_bit_greyscale_keeps_its_tones() -> None:
    ramp = np.tile(np.array([0, 32768, 65535], dtype=np.uint16), (2, 1))
    decoded = decode_image(encode(Image.fromarray(ramp), "PNG"))
    assert [decoded.image.getpixel((x, 0)) for x in range(3)] == [
        (0, 0, 0),
        (128, 128, 128),
        (255, 255, 255),
    ]


def test_empty_body_says_so() -> None:
    error = decode_error(b"")
    assert error.code == "image_not_decodable"
    assert "empty" in error.message


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"just some text, not a picture", "not an image"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "web page"),
        (b"%PDF-1.7\n1 0 obj\n", "PDF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
    ],
)
def test_non_images_are_refused_with_a_hint(data: bytes, hint: str) -> None:
    error = decode_error(data)
    assert error.code == "image_not_decodable"
    assert hint in error.message


def test_other_pillow_formats_are_named() -> None:
    error = decode_error(encode(Image.new("RGB", (4, 4)), "TIFF"))
    assert error.code == "image_not_decodable"
    assert "TIFF" in error.message
    assert "JPEG, PNG, WebP, GIF or BMP" in error.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_truncated_files_are_reported_as_truncated(fmt: str) -> None:
    data = encode(noise(200, 150), fmt)
    error = decode_error(data[: len(data) // 2])
    assert error.code == "image_truncated"


def test_a_png_cut_inside_its_header_is_not_decodable() -> None:
    error = decode_error(encode(noise(20, 20), "PNG")[:30])
    assert error.code == "image_not_decodable"
    assert "starts like a PNG" in error.message


def test_corrupt_pixel_data_is_not_decodable() -> None:
    data = bytearray(encode(noise(64, 64), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 200] = bytes(200)  # keeps the length, breaks the zlib stream
    error = decode_error(bytes(data))
    assert error.code == "image_not_decodable"


def png_claiming(width: int, height: int) -> bytes:
    """A valid little PNG whose IHDR (with a correct CRC) claims width x height."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = data.index(b"IHDR")
    struct.pack_into(">II", data, ihdr + 4, width, height)
    struct.pack_into(">I", data, ihdr + 17, zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def test_huge_dimensions_are_refused_before_decoding(
    pixel_loads: list[ImageFile.ImageFile],
) -> None:
    error = decode_error(png_claiming(100_000, 100_000))
    assert pixel_loads == []  # no 30 GB allocation happened
    assert error.code == "image_too_many_pixels"


def test_our_pixel_limit_applies_below_pillows_own() -> None:
    error = decode_error(png_claiming(8000, 6000), max_pixels=40_000_000)
    assert error.code == "image_too_many_pixels"
    assert "8000x6000" in error.message
    assert "40,000,000" in error.message


def test_pixel_limit_is_inclusive() -> None:
    data = encode(Image.new("RGB", (100, 50)), "PNG")
    assert decode_image(data, max_pixels=5000).width == 100
    assert decode_error(data, max_pixels=4999).code == "image_too_many_pixels"


def test_pillow_global_limit_is_left_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    decode_error(png_claiming(100_000, 100_000))
    decode_image(encode(Image.new("RGB", (10, 10)), "PNG"), max_pixels=10**12)
    assert before == Image.MAX_IMAGE_PIXELS


# --- decode cost and check_image (what the API runs at submit) ---------------------------------


def png_header(width: int, height: int, bit_depth: int, color_type: int) -> bytes:
    """A PNG that only claims a size and depth: enough for Image.open, never decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def cost_of(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as opened:
        return decode_cost(opened)


@pytest.mark.parametrize(
    ("bit_depth", "color_type", "bytes_per_pixel"),
    [(8, 2, 3), (8, 6, 4), (16, 6, 8), (16, 2, 6), (16, 0, 2), (16, 4, 4), (8, 0, 1), (8, 3, 1)],
)
def test_decode_cost_counts_channels_and_bytes_per_channel(
    bit_depth: int, color_type: int, bytes_per_pixel: int
) -> None:
    assert cost_of(png_header(100, 50, bit_depth, color_type)) == 100 * 50 * bytes_per_pixel


def test_decode_cost_of_webp_counts_libwebps_two_rgba_canvases() -> None:
    assert cost_of(encode(Image.new("RGB", (100, 50)), "WEBP")) == 100 * 50 * 8
    assert cost_of(encode(Image.new("RGB", (100, 50)), "JPEG")) == 100 * 50 * 3


def test_default_decode_limit_takes_a_40_mp_photo_not_a_16_bit_rgba_one(
    pixel_loads: list[ImageFile.ImageFile],
) -> None:
    limit = Settings().max_decode_bytes
    assert cost_of(png_header(7300, 5479, 8, 2)) <= limit  # 40 MP, 8-bit RGB
    hostile = png_header(6300, 6300, 16, 6)  # 39.7 MP, under the pixel cap; 318 MB decoded
    for decode in (decode_image, check_image):
        with pytest.raises(InputError) as caught:
            decode(hostile, max_pixels=40_000_000, max_decode_bytes=limit)
        assert pixel_loads == []  # refused from the header
        assert caught.value.code == "image_too_large_to_decode"
        assert caught.value.status == 422
        message = caught.value.message
        assert "6300x6300 pixels with 4 channels of 16 bits" in message
        assert "318 MB" in message and "limit of 134 MB" in message


def test_decode_limit_is_inclusive() -> None:
    data = encode(Image.new("RGBA", (30, 20)), "PNG")
    assert check_image(data, max_decode_bytes=30 * 20 * 4).format == "PNG"
    with pytest.raises(InputError, match=r"limit of 0\.0024 MB"):
        check_image(data, max_decode_bytes=30 * 20 * 4 - 1)


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_check_image_names_the_format_and_size_it_found(fmt: str) -> None:
    checked = check_image(encode(Image.new("RGB", (40, 30), (200, 30, 10)), fmt))
    assert (checked.format, checked.width, checked.height) == (fmt, 40, 30)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_check_image_finds_truncated_files(fmt: str) -> None:
    data = encode(noise(400, 300), fmt)
    with pytest.raises(InputError) as caught:
        check_image(data[: len(data) // 2])
    assert caught.value.code == "image_truncated"


def test_check_image_finds_corrupt_pixel_data() -> None:
    data = bytearray(encode(noise(64, 64), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 200] = bytes(200)
    with pytest.raises(InputError) as caught:
        check_image(bytes(data))
    assert caught.value.code == "image_not_decodable"


# Run in a fresh interpreter: in the suite's own process, the heap that earlier tests left
# (fragmented arenas, their threads) decides how much a decode adds, not the code under test.
_RSS_PROBE = """
import os, threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from framecast.images import check_image

def rss():
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

data, small = Path(os.environ["LARGE"]).read_bytes(), Path(os.environ["SMALL"]).read_bytes()
both_threads = threading.Barrier(2)

def warm_up(_):
    # Both pool threads and their malloc arenas exist before the first measurement.
    both_threads.wait()
    check_image(small)

with ThreadPoolExecutor(2) as pool:
    list(pool.map(warm_up, range(2)))
    before = rss()
    for _ in range(3):
        list(pool.map(check_image, [data] * 2))
    print(rss() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc (Linux)")
def test_check_image_leaves_the_process_no_larger(tmp_path: Path) -> None:
    # 24 MP RGBA: 96 MB decoded, in Pillow's 16 MB blocks. glibc keeps blocks that size in the
    # freeing thread's heap, so without handing them back the process stays 48-96 MiB larger
    # (measured); with them handed back it grows by well under 1 MiB.
    large, small = tmp_path / "large.png", tmp_path / "small.png"
    large.write_bytes(encode(Image.new("RGBA", (6000, 4000), (9, 8, 7, 6)), "PNG"))
    small.write_bytes(encode(noise(64, 64), "PNG"))
    env = {**os.environ, "LARGE": str(large), "SMALL": str(small)}
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE], env=env, capture_output=True, text=True, check=True
    )
    grown = int(out.stdout)
    assert grown < 16 * 1024 * 1024, f"{grown / 2**20:.0f} MiB"
