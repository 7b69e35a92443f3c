"""Prometheus metrics, read from the database when scraped.

The queue, the requests and the workers all live in the database, so every API node answers
``/metrics`` with the same, fleet-wide figures, and nothing is lost when a node restarts: no
counter is kept in process memory. Aggregate over nodes with ``max`` (or scrape one), not
``sum``. The history (finished requests, the wait, run and peak GPU memory histograms) is kept
as totals by each status change (:mod:`framecast.queue.request_totals`); the queue and running gauges
count the unfinished requests through the index on status. So a scrape's cost follows the
number of models, buckets and unfinished requests, never the number of requests ever finished.
The one exception is ``render``'s ``node``: counters of events that leave nothing in the
database (slow bodies cut off), kept by each process (:mod:`framecast.api.node_metrics`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from framecast.db import requests, utcnow, workers
from framecast.queue import request_totals
from framecast.queue.registry import LIVE_STATES, WorkerState
from framecast.queue.request_totals import (
    GPU_MEMORY_BUCKETS,
    RUN_BUCKETS,
    WAIT_BUCKETS,
    Histogram,
)
from framecast.states import Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

WORKER_STATES = (*LIVE_STATES, WorkerState.FAILED)
FAILED_WORKERS_FOR = dt.timedelta(days=1)
"""A worker that gave up loading its engine counts as ``failed`` this long (as /readyz says)."""


@dataclass(frozen=True)
class Snapshot:
    """Everything ``/metrics`` reports, as read at one moment."""

    models: tuple[str, ...]
    queued: dict[str, int]
    running: dict[str, int]
    oldest_queued_age: dict[str, float]
    finished: dict[tuple[str, str, str], int]
    """(model, status, error code or "") -> requests."""
    wait: list[Histogram]
    run: list[Histogram]
    gpu_memory: list[Histogram]
    workers: dict[str, int]


def read_snapshot(
    engine: Engine, models: Iterable[str], heartbeat_window: dt.timedelta
) -> Snapshot:
    """The figures, read from the database now."""
    now = utcnow()
    r = requests.c
    with engine.connect() as conn:
        # Through ix_requests_status_model_seq: the unfinished requests only.
        queue_rows = conn.execute(
            select(r.model, r.status, func.count(), func.min(r.created_at))
            .where(r.status.in_([Status.IN_QUEUE.value, Status.IN_PROGRESS.value]))
            .group_by(r.model, r.status)
        ).all()
        totals = request_totals.read(conn)
        w = workers.c
        live = conn.execute(
            select(w.state, func.count())
            .where(
                w.heartbeat_at >= now - heartbeat_window,
                w.state.in_([s.value for s in LIVE_STATES]),
            )
            .group_by(w.state)
        ).all()
        failed = conn.execute(
            select(func.count()).where(
                w.state == WorkerState.FAILED.value, w.heartbeat_at >= now - FAILED_WORKERS_FOR
            )
        ).scalar_one()
    queued: dict[str, int] = {}
    running: dict[str, int] = {}
    oldest: dict[str, float] = {}
    for model, status, count, first in queue_rows:
        if status == Status.IN_QUEUE.value:
            queued[model] = int(count)
            oldest[model] = max(0.0, (now - first).total_seconds()) if first else 0.0
        else:
            running[model] = int(count)
    finished = totals.finished
    known = tuple(dict.fromkeys([*models, *queued, *running, *(k[0] for k in finished)]))
    wait = totals.histograms[request_totals.WAIT]
    run = totals.histograms[request_totals.RUN]
    gpu_memory = totals.histograms[request_totals.GPU_MEMORY]
    states = (
        {s.value: 0 for s in WORKER_STATES}
        | {s: int(n) for s, n in live}
        | {WorkerState.FAILED.value: int(failed)}
    )
    return Snapshot(known, queued, running, oldest, finished, wait, run, gpu_memory, states)


def _bucket_pairs(bounds: Sequence[float], h: Histogram) -> list[tuple[str, float]]:
    return [(repr(b), float(c)) for b, c in zip(bounds, h.cumulative, strict=False)] + [
        ("+Inf", float(h.cumulative[-1]))
    ]


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """The snapshot as Prometheus metric families."""
    depth = GaugeMetricFamily(
        "framecast_queue_depth", "Requests waiting in the queue.", labels=["model"]
    )
    age = GaugeMetricFamily(
        "framecast_queue_oldest_age_seconds",
        "Age of the oldest queued request (0 when none waits).",
        labels=["model"],
    )
    running = GaugeMetricFamily(
        "framecast_requests_running", "Requests a worker is running.", labels=["model"]
    )
    for model in snapshot.models:
        depth.add_metric([model], snapshot.queued.get(model, 0))
        age.add_metric([model], snapshot.oldest_queued_age.get(model, 0.0))
        running.add_metric([model], snapshot.running.get(model, 0))
    yield from (depth, age, running)

    outcomes = CounterMetricFamily(
        "framecast_requests_finished",
        "Finished requests by final status and error code (empty unless failed).",
        labels=["model", "status", "error_code"],
    )
    for (model, status, code), count in sorted(snapshot.finished.items()):
        outcomes.add_metric([model, status, code], count)
    yield outcomes

    for name, text, bounds, rows, labels in (
        (
            "framecast_request_wait_seconds",
            "Seconds from submit to a worker starting the request.",
            WAIT_BUCKETS,
            snapshot.wait,
            ["model"],
        ),
        (
            "framecast_request_run_seconds",
            "Seconds from start to finish, by final status.",
            RUN_BUCKETS,
            snapshot.run,
            ["model", "status"],
        ),
        (
            "framecast_request_peak_gpu_memory_bytes",
            "Peak GPU memory of a completed request, as its engine recorded it.",
            GPU_MEMORY_BUCKETS,
            snapshot.gpu_memory,
            ["model"],
        ),
    ):
        family = HistogramMetricFamily(name, text, labels=labels)
        for h in rows:
            family.add_metric(list(h.labels), _bucket_pairs(bounds, h), h.total)
        yield family

    states = GaugeMetricFamily(
        "framecast_workers",
        "Workers by state: live ones (loading, idle, busy) and those that gave up loading their engine in the last day (failed).",
        labels=["state"],
    )
    for state, count in snapshot.workers.items():
        states.add_metric([state], count)
    yield states


class DatabaseCollector(Collector):
    def __init__(
        self, engine: Engine, models: Sequence[str], heartbeat_window: dt.timedelta
    ) -> None:
        self.engine = engine
        self.models = tuple(models)
        self.heartbeat_window = heartbeat_window

    def collect(self) -> Iterator[Metric]:
        yield from families(read_snapshot(self.engine, self.models, self.heartbeat_window))


def render(
    engine: Engine,
    models: Sequence[str],
    heartbeat_window: dt.timedelta,
    node: Collector | None = None,
) -> bytes:
    """The text exposition format of the current figures; ``node``: this process's own
    counters (``framecast.api.node_metrics``), beside the database's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(engine, models, heartbeat_window))
    if node is not None:
        registry.register(node)
    return generate_latest(registry)
