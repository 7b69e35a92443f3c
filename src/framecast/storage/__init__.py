"""Where input images and output videos are kept: a local folder, or an S3-compatible bucket.

``base`` declares the interface (serving a link included, so callers never ask which store they
have), ``local`` and ``s3`` are the backends, ``signing`` signs the local store's links.
``s3`` (and so boto3, the ``s3`` extra) is imported only when a bucket is named or
:class:`S3Storage` is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from framecast.storage.base import FILES_PATH, LinkError, Storage, StorageError, check_key
from framecast.storage.local import LocalStorage

if TYPE_CHECKING:
    from framecast.storage.s3 import S3Storage

__all__ = [
    "FILES_PATH",
    "LinkError",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "check_key",
    "open_storage",
]


def __getattr__(name: str) -> Any:
    if name == "S3Storage":
        from framecast.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_URL_FORMS = "leave FRAMECAST_STORAGE_URL empty (local folder) or set FRAMECAST_STORAGE_URL=s3://bucket/prefix (the prefix is optional)"


def open_storage(url: str | None, *, local_root: Path, secret: bytes) -> Storage:
    """The store ``FRAMECAST_STORAGE_URL`` names: empty for ``local_root``, or ``s3://bucket[/prefix]``.

    Endpoint, region and credentials for S3 come from the usual AWS settings, which is also how
    MinIO and Cloudflare R2 are reached (``AWS_ENDPOINT_URL``).
    """
    if not url or not url.strip():
        return LocalStorage(local_root, secret)
    bucket, prefix = _parse_s3_url(url.strip())
    try:
        from framecast.storage.s3 import S3Storage
    except ImportError as exc:
        raise StorageError(
            f"FRAMECAST_STORAGE_URL names bucket {bucket!r} but boto3 is not installed: "
            "pip install 'framecast[s3]'"
        ) from exc
    return S3Storage(bucket, prefix)


def _parse_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(f"unsupported storage URL {url!r}: {_URL_FORMS}")
    if "@" in parts.netloc:
        # Not echoed: whatever precedes the @ is probably a secret.
        raise ValueError(
            "the storage URL must not carry credentials: set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) instead; {_URL_FORMS}"
        )
    bucket = parts.netloc
    if not bucket or ":" in bucket or parts.query or parts.fragment:
        raise ValueError(
            f"storage URL {url!r} needs a bucket name and nothing else after s3://; {_URL_FORMS}. "
            "Set the endpoint (MinIO, R2) with AWS_ENDPOINT_URL"
        )
    segments = [s for s in parts.path.split("/") if s]
    if any(s in {".", ".."} for s in segments):
        raise ValueError(f"storage URL {url!r} has '.' or '..' in its prefix; {_URL_FORMS}")
    return bucket, "/".join(segments)
