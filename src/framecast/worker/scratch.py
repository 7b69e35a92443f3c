"""Workers' scratch folders, and clearing those that dead workers left behind.

Each worker renders into ``<root>/<worker id>/`` and holds an exclusive ``flock`` on
``<root>/<worker id>.lock`` for as long as it lives. The kernel drops that lock when the process
ends, ``kill -9`` included, so a lock another worker can take marks a dead owner whose folder is
garbage, while a live worker's folder is never touched, whatever its age.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger("framecast.worker.scratch")

LOCK_SUFFIX = ".lock"
GUARD = ".scratch.lock"
"""Held while a worker claims its folder or clears others', so the two never interleave (a
cleaner must not take a lock in the instant between a new worker creating it and locking it)."""


@contextlib.contextmanager
def _guard(root: Path) -> Iterator[None]:
    with (root / GUARD).open("a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield  # closing the file drops the flock


class Scratch:
    """The scratch folder of one worker, held (locked) until :meth:`release`."""

    def __init__(self, root: Path, owner: str) -> None:
        self.root = root
        self.folder = root / owner
        self._lock_path = root / f"{owner}{LOCK_SUFFIX}"
        self._lock: IO[str] | None = None

    def claim(self) -> Path:
        # The lock first, then the folder: a folder with no lock file beside it is never a live
        # worker's, which is what lets clear_stale remove such folders.
        self.root.mkdir(parents=True, exist_ok=True)
        with _guard(self.root):
            lock = self._lock_path.open("w")
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock = lock
            self.folder.mkdir(exist_ok=True)
        return self.folder

    def release(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._lock is not None:
            with contextlib.suppress(FileNotFoundError):
                self._lock_path.unlink()
            self._lock.close()  # closing drops the flock
            self._lock = None


def clear_stale(root: Path) -> list[Path]:
    """Remove the scratch folders (and loose files) under ``root`` of workers that are gone;
    return what was removed."""
    if not root.is_dir():
        return []
    with _guard(root):
        removed = _clear_stale(root)
    if removed:
        log.info(
            "removed %d scratch folder(s) left by workers that are gone: %s",
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed


def _clear_stale(root: Path) -> list[Path]:
    removed: list[Path] = []
    for lock_path in sorted(root.glob(f"*{LOCK_SUFFIX}")):
        if lock_path.name == GUARD:
            continue
        folder = lock_path.with_name(lock_path.name.removesuffix(LOCK_SUFFIX))
        try:
            lock = lock_path.open("a")
        except FileNotFoundError:  # its owner stopped meanwhile and removed it
            continue
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live worker holds it
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
    for entry in sorted(root.iterdir()):
        if entry.name.endswith(LOCK_SUFFIX) or entry.with_name(entry.name + LOCK_SUFFIX).exists():
            continue
        # No lock beside it: left by a worker that died between the two steps of claim, or by
        # a framecast from before scratch folders had owners.
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
