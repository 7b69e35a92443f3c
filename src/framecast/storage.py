"""Where input images and output videos are kept: a local folder, or an S3-compatible bucket."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import urlsplit

from framecast import signing
from framecast.errors import FramecastError

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class StorageError(FramecastError):
    """The store cannot be used as configured; the message names the bucket and what to check."""

    code = "storage_unavailable"
    status = 503


class Storage(ABC):
    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, key: str, source: Path) -> None:
        """Store a finished local file (moved or copied; the source may be gone afterwards)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a key that is already gone is not an error."""

    @abstractmethod
    def link(self, key: str, base_url: str, ttl_seconds: int) -> tuple[str, int]:
        """A URL anyone can GET for ``ttl_seconds``, and its expiry (unix time)."""


class LocalStorage(Storage):
    """Files under one folder, served by the API at ``/v1/files/<key>`` with signed links."""

    FILES_PATH = "/v1/files/"

    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root
        self.secret = secret

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file and a crash leaves none.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, source: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, target)
        except OSError:  # another file system: copy, then rename into place
            tmp = target.with_name(".tmp-" + target.name)
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
            source.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        target = self.path(key)
        target.unlink(missing_ok=True)
        # Per-request folders would otherwise pile up forever. A writer that races us between its
        # mkdir and its write is not a concern: each folder belongs to one request.
        folder = target.parent
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): nothing above can be empty either
                break
            folder = folder.parent

    def link(self, key: str, base_url: str, ttl_seconds: int) -> tuple[str, int]:
        path = self.FILES_PATH + check_key(key)
        query, expires = signing.sign(self.secret, path, ttl_seconds)
        return f"{base_url.rstrip('/')}{path}?{query}", expires

    def verify(self, key: str, expires: int, signature: str) -> str | None:
        return signing.verify(self.secret, self.FILES_PATH + key, expires, signature)


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
        from framecast.s3storage import S3Storage
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
