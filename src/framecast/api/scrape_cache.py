"""One rendered ``/metrics`` scrape, reused for a few seconds by each API process.

Prometheus and its neighbours (a second Prometheus, an agent, someone's curl loop) scrape on
their own schedules; the figures change at the pace of videos, so reading the database once per
``FRAMECAST_METRICS_CACHE_SECONDS`` is enough. Concurrent scrapes that find the copy stale wait
for one render instead of each running their own: 16 scrapers cost one render, not 16.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ScrapeCache:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._body: bytes | None = None
        self._read_at = 0.0

    def get(self, render: Callable[[], bytes]) -> bytes:
        """The copy if it is younger than ``seconds``, else a new one from ``render``.

        Called from the thread pool (the route is a plain ``def``), so a plain lock: the scrapes
        that arrive during a render wait for it, then find it fresh."""
        with self._lock:
            if self._body is not None and self.clock() - self._read_at < self.seconds:
                return self._body
            started = self.clock()  # its age counts from the read, not from the answer
            self._body = render()
            self._read_at = started
            return self._body
