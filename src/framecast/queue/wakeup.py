"""How an idle worker waits for work: woken by PostgreSQL NOTIFY, or by polling.

With PostgreSQL a worker LISTENs on :data:`framecast.queue.jobs.QUEUE_CHANNEL`, so a submitted
request is claimed within milliseconds instead of up to a poll interval later. It listens
through the process's one LISTEN connection (:func:`framecast.db.backend.listener_for`), which
the API's status watcher shares. Polling stays as the fallback: a notification can be missed
while that connection reconnects, so the wait never lasts longer than ``FRAMECAST_POLL_SECONDS``
either way.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from framecast.db.backend import CONNECT_TIMEOUT_S, Listener, Subscription, listener_for
from framecast.queue.jobs import QUEUE_CHANNEL

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
    """Woken by ``channel``'s notifications; subscribes at its first wait, until :meth:`close`.

    A notification that arrives between two waits ends the next one at once (the work it
    announces may not have been claimed yet); several arriving together end one wait."""

    def __init__(
        self, database_url: str, stop: threading.Event, channel: str = QUEUE_CHANNEL
    ) -> None:
        listener = listener_for(database_url)
        if listener is None:
            raise ValueError("only PostgreSQL has notifications; wait with PollingWaiter")
        self.listener: Listener = listener
        self.stop = stop
        self.channel = channel
        self._woken = threading.Event()
        self._subscription: Subscription | None = None
        self._closed = False
        self._lock = threading.Lock()  # a dispatcher may close it while a wait is under way

    def _subscribe(self) -> Subscription | None:
        with self._lock:
            if self._subscription is None and not self._closed:
                self._subscription = self.listener.subscribe(self.channel, self._notified)
                return self._subscription
            return None

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        subscription = self._subscribe()
        if subscription is not None:
            # Listening before the first wait's poll interval starts, as the worker's first
            # claim found nothing: what is submitted from here on wakes it.
            subscription.wait_tried(CONNECT_TIMEOUT_S)
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._woken.wait(min(left, _STOP_CHECK_S)):
                self._woken.clear()
                return

    def _notified(self, _payload: str) -> None:
        self._woken.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()


def waiter_for(database_url: str, stop: threading.Event, channel: str = QUEUE_CHANNEL) -> Waiter:
    """``channel``: what to be woken by on PostgreSQL; the queue's by default (workers)."""
    if listener_for(database_url) is None:
        return PollingWaiter(stop)
    return ListenWaiter(database_url, stop, channel)
