"""Acceptance fixtures: the real `framecast serve` started as a process on loopback."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from ..pg_schema import create_schema

KEY_A = "test-key-alice"
KEY_B = "test-key-bob"
SUBMIT_PATH = "/v1/models/tencent/hunyuan/image-to-video"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LISTENING = re.compile(r"listening on http://\S+?:(\d+)")
"""The line ``framecast serve`` logs once its socket is bound."""

_SIGNALLED: set[subprocess.Popen[bytes]] = set()
"""Server processes already sent SIGTERM (a second one may cut their graceful stop short)."""


@dataclass
class Server:
    data_dir: Path
    env: dict[str, str]
    port: int = 0
    """0 until the first start, when the server binds a port of the system's choosing and logs
    it; a restart binds the same port again, as a restarted service would."""
    proc: subprocess.Popen[bytes] | None = None
    log_paths: list[Path] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True) -> None:
        env = {
            **os.environ,
            **self.env,
            "FRAMECAST_DATA_DIR": str(self.data_dir),
            "FRAMECAST_PORT": str(self.port),
        }
        log_path = self.data_dir.parent / f"server-{len(self.log_paths)}.log"
        self.log_paths.append(log_path)
        log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "framecast", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60  # a hang guard, not a speed bound
        path = "/readyz" if wait_ready else "/healthz"
        # One client for every poll: each new one builds an SSL context (about 30 ms of CPU,
        # taken from the server starting beside it).
        with httpx.Client(timeout=1) as poller:
            while time.monotonic() < deadline:
                if self._ready(poller, log_path, path):
                    return
        raise RuntimeError(f"server not ready in time:\n{self.log()}")

    def _ready(self, poller: httpx.Client, log_path: Path, path: str) -> bool:
        """One look: the port once the log names it, then ``path``; False after a pause."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{self.log()}")
        if not self.port:
            found = LISTENING.search(log_path.read_text(errors="replace"))
            if found is None:
                time.sleep(0.05)
                return False
            self.port = int(found.group(1))
        try:
            if poller.get(self.base_url + path).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
        return False

    def signal_stop(self) -> subprocess.Popen[bytes] | None:
        """SIGTERM the server, once, without waiting; the process, if one was signalled."""
        if self.proc is None or self.proc.poll() is not None or self.proc in _SIGNALLED:
            return None
        _SIGNALLED.add(self.proc)
        self.proc.send_signal(signal.SIGTERM)
        return self.proc

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log(self) -> str:
        """Everything every start of this server printed."""
        return "".join(p.read_text(errors="replace") for p in self.log_paths)

    def client(self, key: str | None = KEY_A) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


@pytest.fixture(scope="session")
def _servers() -> list[Server]:
    """Every server the session made, in order."""
    return []


@pytest.fixture(scope="module", autouse=True)
def _signal_a_modules_servers_to_stop(_servers: list[Server]) -> Iterator[None]:
    """At a module's end, SIGTERM the servers it made: idle ones still poll the database and
    beat, taking CPU from the tests after them. Not waited for here: they stop while the
    next module runs, and make_server's teardown waits for them all."""
    made = len(_servers)
    yield
    for server in _servers[made:]:
        server.signal_stop()


@pytest.fixture(scope="session")
def _after_the_servers() -> Iterator[list[Callable[[], None]]]:
    """What must wait until every server has stopped: the PostgreSQL schemas' drops. A schema
    dropped under a running server fails its workers' last writes (their "stopped" beat), and
    the tracebacks cost seconds of CPU. make_server asks for this first, so this ends after
    make_server's end, which waits for every server."""
    later: list[Callable[[], None]] = []
    yield later
    for step in later:
        step()


@pytest.fixture(scope="session")
def make_server(
    tmp_path_factory: pytest.TempPathFactory,
    _after_the_servers: list[Callable[[], None]],
    _servers: list[Server],
) -> Iterator[Callable[..., Server]]:
    servers = _servers

    def make(**env: Any) -> Server:
        base = {
            "FRAMECAST_API_KEYS": f"{KEY_A},{KEY_B}",
            "FRAMECAST_ENGINE": "preview",
            "FRAMECAST_HEARTBEAT_SECONDS": "1",
            "FRAMECAST_POLL_SECONDS": "0.1",
            "FRAMECAST_X264_PRESET": "veryfast",
        }
        base.update({f"FRAMECAST_{k.upper()}": str(v) for k, v in env.items()})
        server = Server(tmp_path_factory.mktemp("server") / "data", base)
        servers.append(server)
        return server

    yield make
    # Signal them all first: each takes seconds to stop its workers, and they can do it together.
    for server in servers:
        server.signal_stop()
    running = [s.proc for s in servers if s.proc is not None and s.proc.poll() is None]
    for proc in running:
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on loopback serving files from a folder: (base URL, folder)."""
    root = tmp_path_factory.mktemp("images")
    photo = Image.open(Path(__file__).parents[2] / "src/framecast/assets/sample.jpg")
    photo.save(root / "harbour.jpg")
    photo.rotate(90, expand=True).save(root / "portrait.png")
    (root / "notes.txt").write_text("not an image")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def wait_for(
    client: httpx.Client,
    request_id: str,
    statuses: set[str],
    timeout: float = 120,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/requests/{request_id}/status").json()
        if seen is not None:
            seen.append(body)
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"request {request_id} did not reach {statuses}: last {body}")


def png_bytes(size: tuple[int, int] = (64, 36)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buf, "PNG")
    return buf.getvalue()


def pg_schema_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Server settings on a fresh schema of the test PostgreSQL server (tests/conftest.py finds
    or skips it), dropped once every server has stopped."""
    later: list[Callable[[], None]] = request.getfixturevalue("_after_the_servers")
    url, drop = create_schema(request.getfixturevalue("pg_url"), "fc_accept")
    later.append(drop)
    return {"database_url": url}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Server settings for each queue backend, shared by a module's server: SQLite in the data
    dir, or a fresh schema of the test PostgreSQL server."""
    return {} if request.param == "sqlite" else pg_schema_env(request)
