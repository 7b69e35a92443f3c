"""How an API node waits for a request to change, whichever process or node changes it.

With PostgreSQL, a trigger on ``requests`` (migration 0006) NOTIFYs :data:`STATUS_CHANNEL`
with the request's id on every status or progress change; one thread per API process LISTENs
on its own connection and wakes the waits for that id. Waits also end after a short interval
whatever happens (a notification can be missed while that connection reconnects, and a queued
request's position changes without one). With SQLite, which has no notifications, waits are
that interval alone: short polling. Either way a wait holds no database connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("framecast.status_watch")

STATUS_CHANNEL = "framecast_status"
"""The NOTIFY channel of migration 0006's trigger; the payload is the request id."""

LISTEN_FALLBACK_S = 2.0
"""With notifications, the longest a wait goes without re-reading the request anyway."""

_STOP_CHECK_S = 1.0


class StatusWatch:
    def __init__(self, database_url: str, poll_seconds: float) -> None:
        url = make_url(database_url)
        self.postgres = url.get_backend_name() == "postgresql"
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.poll_seconds = poll_seconds
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        """How long a wait lasts at most before the caller reads the request again."""
        return LISTEN_FALLBACK_S if self._listening.is_set() else self.poll_seconds

    @contextlib.contextmanager
    def follow(self, request_id: str) -> Iterator[Following]:
        """Follow ``request_id``: read it, then ``await following.changed(timeout)``, read it
        again, and so on. A change between a read and the next wait is not lost: the
        subscription exists before the first read."""
        following = Following(self, request_id)
        if not self.postgres:
            yield following
            return
        self._start()
        with self._lock:
            self._waiters.setdefault(request_id, set()).add(following.entry)
        try:
            yield following
        finally:
            with self._lock:
                waiting = self._waiters.get(request_id)
                if waiting is not None:
                    waiting.discard(following.entry)
                    if not waiting:
                        del self._waiters[request_id]

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=_STOP_CHECK_S * 3)

    # -- the listening thread -------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._listen, name="framecast-status-listen", daemon=True
                )
                self._thread.start()

    def _wake(self, request_id: str) -> None:
        with self._lock:
            entries = list(self._waiters.get(request_id, ()))
        for loop, event in entries:
            # RuntimeError: that loop has closed, and its wait is gone with it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def _listen(self) -> None:
        conn: Any = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    import psycopg

                    conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
                    conn.execute(f"LISTEN {STATUS_CHANNEL}")
                    self._listening.set()
                for note in conn.notifies(timeout=_STOP_CHECK_S):
                    self._wake(note.payload)
            except Exception:
                log.warning(
                    "status LISTEN connection failed; polling until it is back", exc_info=True
                )
                self._listening.clear()
                _closed(conn)
                conn = None
                self._stop.wait(_STOP_CHECK_S)
        self._listening.clear()
        _closed(conn)


def _closed(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # already broken; nothing to release
            log.debug("closing the status LISTEN connection failed", exc_info=True)


class Following:
    """One request followed by one waiter (see :meth:`StatusWatch.follow`)."""

    def __init__(self, watch: StatusWatch, request_id: str) -> None:
        self.watch = watch
        self.request_id = request_id
        self.entry = (asyncio.get_running_loop(), asyncio.Event())

    async def changed(self, within: float) -> None:
        """Return when the request may have changed since the last read: a notification for
        it, or :attr:`StatusWatch.interval` (or ``within`` seconds, if shorter) gone by."""
        limit = max(0.0, min(within, self.watch.interval))
        event = self.entry[1]
        if not self.watch.postgres:
            await asyncio.sleep(limit)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), limit)
        event.clear()
