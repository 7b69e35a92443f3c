"""Files under one folder on this machine, served by the API through signed links."""

from __future__ import annotations

import datetime as dt
import mimetypes
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from starlette.responses import FileResponse

from framecast.contract.errors import ErrorCode
from framecast.storage import signing
from framecast.storage.base import FILES_PATH, LinkError, Storage, StoredFile, check_key


class LocalStorage(Storage):
    """Files under one folder, served by the API at ``/v1/files/<key>`` with signed links."""

    FILES_PATH = FILES_PATH

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

    def list_files(self, prefix: str) -> Iterator[StoredFile]:
        top = self.root / check_key(prefix.rstrip("/"))
        for folder, _dirs, names in os.walk(top):
            for name in names:
                if name.startswith(".tmp-"):  # a write in progress, not a stored file
                    continue
                path = Path(folder) / name
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:  # deleted meanwhile
                    continue
                yield StoredFile(
                    path.relative_to(self.root).as_posix(),
                    dt.datetime.fromtimestamp(mtime, dt.UTC),
                )

    def link(self, key: str, base_url: str, ttl_seconds: int) -> tuple[str, int]:
        path = self.FILES_PATH + check_key(key)
        query, expires = signing.sign(self.secret, path, ttl_seconds)
        return f"{base_url.rstrip('/')}{path}?{query}", expires

    def verify(self, key: str, expires: int, signature: str) -> str | None:
        return signing.verify(self.secret, self.FILES_PATH + key, expires, signature)

    def serve(self, key: str, expires: int, signature: str) -> FileResponse:
        # The signature is checked first: a key no link was signed for is simply not valid.
        problem = self.verify(key, expires, signature)
        if problem == "expired":
            raise LinkError(
                "this link has expired; ask the result URL for a fresh one",
                code=ErrorCode.LINK_EXPIRED,
                status=403,
            )
        if problem is not None:
            raise LinkError("this link is not valid", code=ErrorCode.INVALID_SIGNATURE, status=403)
        try:
            path = self.path(key)
        except ValueError:
            # Signed, but for a key this store never writes (`outputs/../x`): no such file.
            raise LinkError("the file behind this link does not exist") from None
        if not path.is_file():
            raise LinkError("the file behind this link no longer exists")
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        remaining = max(0, expires - int(dt.datetime.now(dt.UTC).timestamp()))
        # FileResponse answers Range requests (206, 416) itself.
        return FileResponse(
            path,
            media_type=media_type,
            headers={"Cache-Control": f"private, max-age={remaining}"},
        )
