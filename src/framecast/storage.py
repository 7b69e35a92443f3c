"""Where input images and output videos are kept. Local folder by default."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from framecast import signing

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


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

    def link(self, key: str, base_url: str, ttl_seconds: int) -> tuple[str, int]:
        path = self.FILES_PATH + check_key(key)
        query, expires = signing.sign(self.secret, path, ttl_seconds)
        return f"{base_url.rstrip('/')}{path}?{query}", expires

    def verify(self, key: str, expires: int, signature: str) -> str | None:
        return signing.verify(self.secret, self.FILES_PATH + key, expires, signature)
