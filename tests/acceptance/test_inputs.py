"""Input images through the API with the SSRF guard on (the default)."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from .conftest import SUBMIT_PATH, Server, png_bytes


@pytest.fixture(scope="module")
def guarded(make_server: Callable[..., Server]) -> Server:
    s = make_server(max_image_bytes=str(1024 * 1024), workers="0")
    s.start(wait_ready=False)
    return s


def _data(payload: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(payload).decode()


def _huge_png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "path",
    [
        "http://127.0.0.1:{port}/harbour.jpg",
        "http://localhost:{port}/harbour.jpg",
        "http://2130706433:{port}/harbour.jpg",
        "http://[::ffff:127.0.0.1]:{port}/harbour.jpg",
        "http://[::1]:{port}/harbour.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.png",
        "http://192.168.1.1/x.png",
        "http://100.64.0.1/x.png",
    ],
)
def test_private_addresses_are_refused(
    guarded: Server, image_server: tuple[str, Path], path: str
) -> None:
    port = image_server[0].rsplit(":", 1)[1]
    with guarded.client() as c:
        r = c.post(SUBMIT_PATH, json={"prompt": "p", "image_url": path.format(port=port)})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "image_url_refused"
    assert "FRAMECAST_ALLOW_PRIVATE_URLS" in err["message"]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "javascript:alert(1)"]
)
def test_other_schemes_are_refused(guarded: Server, url: str) -> None:
    with guarded.client() as c:
        r = c.post(SUBMIT_PATH, json={"prompt": "p", "image_url": url})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "image_url_unsupported_scheme"


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 200), (10, 200, 90)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (_data(b"hello, I am text", "text/plain"), "image_not_decodable"),
        (_data(_jpeg()[:400], "image/jpeg"), "image_truncated"),
        (_data(png_bytes()[:60]), "image_truncated"),
        (_data(b"\0" * (1024 * 1024 + 10)), "image_too_large"),
        (_data(_huge_png_header(100_000, 100_000)), "image_too_many_pixels"),
    ],
)
def test_bad_images_are_refused_at_submit(guarded: Server, url: str, code: str) -> None:
    with guarded.client() as c:
        r = c.post(SUBMIT_PATH, json={"prompt": "p", "image_url": url})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code, r.json()
    assert r.json()["error"]["message"]


def test_a_good_image_is_queued_and_readyz_says_no_worker(guarded: Server) -> None:
    with guarded.client() as c:
        r = c.post(SUBMIT_PATH, json={"prompt": "p", "image_url": _data(png_bytes())})
        assert r.status_code == 200
        status = c.get(f"/v1/requests/{r.json()['request_id']}/status").json()
        assert status["status"] == "in_queue" and status["queue_position"] >= 0
        assert "no worker serving this model" in status["note"]
        ready = c.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "no_ready_worker"
