"""A real webhook receiver for tests: an HTTP server on loopback that checks every delivery's
signature with the reference implementation (the ``standardwebhooks`` package) and keeps what
it got, de-duplicated by ``webhook-id`` as a receiver should."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


def free_port() -> int:
    """A port chosen before anything listens: the tests send to a receiver that is down, then
    start it on the same address (a server that binds port 0 could not be down first)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    id: str
    headers: dict[str, str]
    body: bytes
    path: str = ""
    """The request target as it arrived (path and query, escapes and all)."""

    @property
    def payload(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Receiver:
    """``answer``: the status it answers (a 3xx with ``Location: redirect_to``); ``delay``:
    seconds it waits before answering. ``start``/``stop`` any number of times on one port."""

    secret: str
    port: int = field(default_factory=free_port)
    answer: int = 204
    redirect_to: str | None = None
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    """Every delivery whose signature verified, in arrival order (duplicates included)."""
    unverified: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    """Per delivery id: how many times it was answered 2xx."""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/framecast"

    @property
    def unique(self) -> dict[str, Received]:
        """Deliveries by id, the first arrival of each (what a de-duplicating receiver keeps)."""
        out: dict[str, Received] = {}
        for item in self.received:
            out.setdefault(item.id, item)
        return out

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError:
                    with receiver._lock:
                        receiver.unverified += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                time.sleep(receiver.delay)
                with receiver._lock:
                    receiver.received.append(
                        Received(headers["webhook-id"], headers, body, self.path)
                    )
                    if 200 <= receiver.answer < 300:
                        receiver.accepted[headers["webhook-id"]] += 1
                self.send_response(receiver.answer)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 60.0) -> dict[str, Received]:
        """Wait until ``count`` distinct deliveries arrived; them, by id. ``timeout``: a hang
        guard (the wait ends when they are there), generous for a loaded machine."""
        deadline = time.monotonic() + timeout
        while len(self.unique) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        unique = self.unique
        assert len(unique) >= count, f"got {len(unique)} of {count} deliveries: {unique}"
        return unique
