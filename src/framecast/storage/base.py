"""The storage interface: what the API, the worker and retention may ask of any store."""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from framecast.contract.errors import ErrorCode
from framecast.errors import FramecastError

if TYPE_CHECKING:
    from starlette.responses import Response

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")

FILES_PATH = "/v1/files/"
"""Where the API answers GETs on the links a store hands out that point back at the API."""


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class StorageError(FramecastError):
    """The store cannot be used as configured; the message names the bucket and what to check."""

    code = ErrorCode.STORAGE_UNAVAILABLE
    status = 503


class LinkError(FramecastError):
    """A GET on ``/v1/files/<key>`` the store will not answer: the API sends it in its error
    shape (403 ``link_expired`` / ``invalid_signature``, 404 ``file_not_found``)."""

    code = ErrorCode.FILE_NOT_FOUND
    status = 404


@dataclass(frozen=True)
class StoredFile:
    key: str
    modified: dt.datetime
    """When it was last written (UTC)."""


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
    def list_files(self, prefix: str) -> Iterator[StoredFile]:
        """Every file whose key starts with ``prefix`` (a folder such as ``inputs/``), lazily:
        retention walks stores far larger than memory."""

    @abstractmethod
    def link(self, key: str, base_url: str, ttl_seconds: int) -> tuple[str, int]:
        """A URL anyone can GET for ``ttl_seconds``, and its expiry (unix time).

        ``base_url`` is the API's; a store whose links point at the API answers them in
        :meth:`serve`, one whose links point elsewhere (a presigned object URL) ignores it.
        """

    @abstractmethod
    def serve(self, key: str, expires: int, signature: str) -> Response:
        """The answer to a GET on ``/v1/files/<key>?expires=..&signature=..``.

        Raises :class:`LinkError` for a link that is expired, tampered with or not this store's,
        or whose file is gone. Range requests are the response's to honour.
        """
