"""Start-up checks of ``serve`` and ``worker``: each problem is one line saying what is wrong and
which setting changes it, and an exit code, instead of a traceback from deep inside."""

from __future__ import annotations

import errno
import socket
import tempfile

from framecast.settings import Settings

EXIT_CONFIG = 2
"""A setting that cannot work here: the port is taken, the data folder cannot be written."""
EXIT_ENGINE_UNAVAILABLE = 3
"""A worker could not load its engine after its tries; ``serve`` does not restart such a worker."""


class StartupError(Exception):
    """Why ``serve`` or ``worker`` cannot start, as one line, and the exit code to end with."""

    def __init__(self, message: str, exit_code: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def uses_data_dir(settings: Settings, *, worker: bool) -> bool:
    """Whether this process writes to FRAMECAST_DATA_DIR: an API node on PostgreSQL and S3 with
    a configured secret may run on a read-only file system, a worker always needs scratch space."""
    return (
        worker
        or settings.database_url is None
        or settings.storage_url is None
        or settings.secret_key is None
    )


def check_data_dir(settings: Settings) -> None:
    """Raise :class:`StartupError` unless the data folder exists (or can be made) and takes a file.

    Writing a file is the only reliable test: permission bits say nothing about a read-only
    mount, and nothing at all to root.
    """
    folder = settings.data_dir
    fix = "set FRAMECAST_DATA_DIR (or --data-dir) to a folder this user can write to"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StartupError(
            f"the data folder {folder.resolve()} cannot be written "
            f"({exc.strerror or type(exc).__name__}); {fix}"
        ) from exc


def bind_socket(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound here so that a taken port is one clear line, before
    any worker starts (uvicorn itself would log an error and exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restart may bind while the old connections are in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use by another process; set "
                "FRAMECAST_PORT (or --port) to a free port, or stop the other process"
            ) from exc
        if exc.errno == errno.EACCES:
            raise StartupError(
                f"this user may not listen on port {port}; set FRAMECAST_PORT (or --port) to "
                "1024 or above"
            ) from exc
        raise StartupError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); set FRAMECAST_HOST (or "
            "--host) to an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
        ) from exc
    sock.set_inheritable(False)
    return sock
