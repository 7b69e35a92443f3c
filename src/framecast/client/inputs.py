"""Turning a local image into something a submit can carry."""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path

_IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://", "data:"))


def data_uri(path: str | Path) -> str:
    """A local image file as a ``data:`` URI, which framecast (and RunComfy) accept wherever
    an image URL goes: the file goes up inside the request, no hosting needed."""
    file = Path(path)
    kind = _IMAGE_TYPES.get(file.suffix.lower()) or mimetypes.guess_type(file.name)[0]
    encoded = base64.b64encode(file.read_bytes()).decode("ascii")
    return f"data:{kind or 'application/octet-stream'};base64,{encoded}"


def image_reference(image: str | Path) -> str:
    """An ``http(s)://`` or ``data:`` reference as it is; a local path as a data: URI."""
    text = str(image)
    return text if is_url(text) else data_uri(text)
