"""Signed, expiring links to stored files, fetchable with no header (as RunComfy's are)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def _mac(secret: bytes, path: str, expires: int) -> str:
    digest = hmac.new(secret, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(secret: bytes, path: str, ttl_seconds: int, now: float | None = None) -> tuple[str, int]:
    """Return the query string (``expires=..&signature=..``) for ``path`` and its expiry."""
    expires = int((time.time() if now is None else now) + ttl_seconds)
    return f"expires={expires}&signature={_mac(secret, path, expires)}", expires


def verify(
    secret: bytes, path: str, expires: int, signature: str, now: float | None = None
) -> str | None:
    """None when the link is valid, else why not (``expired`` or ``bad_signature``).

    ``signature`` is whatever the query string held: compare_digest refuses non-ASCII text, and
    no valid signature has any, so the comparison is of UTF-8 bytes.
    """
    given = signature.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(_mac(secret, path, expires).encode(), given):
        return "bad_signature"
    if (time.time() if now is None else now) > expires:
        return "expired"
    return None
