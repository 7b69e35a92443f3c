"""How an idle worker waits for work: woken by PostgreSQL NOTIFY, or by polling.

With PostgreSQL a worker LISTENs on :data:`framecast.queue.jobs.QUEUE_CHANNEL`, so a submitted
request is claimed within milliseconds instead of up to a poll interval later. Polling stays
as the fallback: a notification can be missed while the listening connection reconnects, so
the wait never lasts longer than ``FRAMECAST_POLL_SECONDS`` either way.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from sqlalchemy.engine import make_url

from framecast.queue.jobs import QUEUE_CHANNEL

log = logging.getLogger("framecast.queue.wakeup")

_STOP_CHECK_S = 1.0
"""The longest a wait goes without looking at the stop flag (shutdown latency)."""


class Waiter(Protocol):
    def wait(self, timeout: float) -> None:
        """Return after ``timeout`` seconds, when work may have arrived, or on stop."""

    def close(self) -> None: ...


class PollingWaiter:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def wait(self, timeout: float) -> None:
        self.stop.wait(timeout)

    def close(self) -> None:
        return None


class ListenWaiter:
    """LISTEN on its own autocommit connection; reconnects lazily after an error."""

    def __init__(
        self, database_url: str, stop: threading.Event, channel: str = QUEUE_CHANNEL
    ) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.stop = stop
        self.channel = channel
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        conn.execute(f"LISTEN {self.channel}")
        return conn

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                if self._conn is None:
                    self._conn = self._connect()
                for _ in self._conn.notifies(timeout=min(left, _STOP_CHECK_S), stop_after=1):
                    return
            except Exception:
                if self.stop.is_set():
                    return  # closed under it while stopping: nothing went wrong
                log.warning("LISTEN connection failed; polling until it is back", exc_info=True)
                self.close()
                self.stop.wait(min(left, _STOP_CHECK_S))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken; nothing to release
                log.debug("closing the LISTEN connection failed", exc_info=True)


def waiter_for(database_url: str, stop: threading.Event, channel: str = QUEUE_CHANNEL) -> Waiter:
    """``channel``: what to be woken by on PostgreSQL; the queue's by default (workers)."""
    if make_url(database_url).get_backend_name() == "postgresql":
        return ListenWaiter(database_url, stop, channel)
    return PollingWaiter(stop)
