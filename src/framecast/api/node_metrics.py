"""Counters an API process keeps in its own memory, for events that leave no row in the
database: each node counts its own, and a restart starts them again from 0 (Prometheus reads
that as a counter reset). Unlike the database's figures (``framecast.api.metrics``), sum these over
the API nodes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

SLOW_BODY_LIMITS = ("min_rate", "deadline")
"""Which limit cut a slow body off (``framecast.api.limits.BodyTiming``)."""


class NodeCounters(Collector):
    """This process's counters, exposed by ``/metrics`` beside the database's figures."""

    def __init__(self) -> None:
        self.slow_bodies: Counter[str] = Counter()

    def count_slow_body(self, limit: str) -> None:
        """A request body cut off for arriving too slowly (called on the event loop)."""
        self.slow_bodies[limit] += 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "framecast_slow_bodies",
            "Request bodies this API process cut off (408) for arriving too slowly, by the "
            "limit that did it: min_rate (FRAMECAST_BODY_MIN_BYTES_PER_SECOND) or deadline "
            "(FRAMECAST_BODY_TIMEOUT_SECONDS). Per process: sum over API nodes.",
            labels=["limit"],
        )
        for limit in SLOW_BODY_LIMITS:
            family.add_metric([limit], self.slow_bodies[limit])
        yield family
