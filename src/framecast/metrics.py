"""Prometheus metrics, read from the database when scraped.

The queue, the requests and the workers all live in the database, so every API node answers
``/metrics`` with the same, fleet-wide figures, and nothing is lost when a node restarts: no
counter is kept in process memory. Aggregate over nodes with ``max`` (or scrape one), not
``sum``. Histograms are computed by the database from each request's timestamps (wait: submit to
start; run: start to finish) and from the peak GPU memory its engine recorded in the result's
metadata (``peak_gpu_memory_bytes``), so a scrape reads the whole requests table: cheap at the
rate a GPU fleet finishes videos, and the reason ``/metrics`` is not meant to be scraped every
second.
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
from sqlalchemy import ColumnElement, Engine, Float, and_, case, cast, func, select

from framecast.db import requests, utcnow, workers
from framecast.engines.base import PEAK_GPU_MEMORY_KEY
from framecast.states import Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
"""Seconds from submit to a worker starting it."""
RUN_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)
"""Seconds from start to finish: a preview takes seconds, the model at 720p most of an hour."""
GIB = 1024.0**3
GPU_MEMORY_BUCKETS = tuple(g * GIB for g in (8, 16, 24, 32, 40, 48, 64, 80, 96, 141))
"""Bytes: the cards' sizes (24 GB consumer, 40/80 GB A100, 80 GB H100, 141 GB H200)."""


WORKER_STATES = ("loading", "idle", "busy", "failed")
FAILED_WORKERS_FOR = dt.timedelta(days=1)
"""A worker that gave up loading its engine counts as ``failed`` this long (as /readyz says)."""


@dataclass(frozen=True)
class Histogram:
    labels: tuple[str, ...]
    cumulative: tuple[int, ...]
    """Observations at or below each bucket bound, then the total (the +Inf bucket)."""
    total: float


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


def _seconds(
    engine: Engine, later: ColumnElement[dt.datetime], earlier: ColumnElement[dt.datetime]
) -> ColumnElement[float]:
    if engine.dialect.name == "sqlite":  # stored as text; julianday counts days
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return cast(func.extract("epoch", later - earlier), Float)


def _histograms(
    engine: Engine,
    value: ColumnElement[float],
    bounds: Sequence[float],
    group: Sequence[ColumnElement[str]],
    where: ColumnElement[bool],
) -> list[Histogram]:
    columns = [func.sum(case((value <= bound, 1), else_=0)) for bound in bounds]
    query = (
        select(*group, func.count(), func.coalesce(func.sum(value), 0.0), *columns)
        .where(where)
        .group_by(*group)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out = []
    for row in rows:
        labels = tuple(str(v or "") for v in row[: len(group)])
        count, total, *below = row[len(group) :]
        out.append(Histogram(labels, (*(int(b or 0) for b in below), int(count)), float(total)))
    return out


def read_snapshot(
    engine: Engine, models: Iterable[str], heartbeat_window: dt.timedelta
) -> Snapshot:
    """The figures, read from the database now."""
    now = utcnow()
    r = requests.c
    with engine.connect() as conn:
        queue_rows = conn.execute(
            select(r.model, r.status, func.count(), func.min(r.created_at))
            .where(r.status.in_([Status.IN_QUEUE.value, Status.IN_PROGRESS.value]))
            .group_by(r.model, r.status)
        ).all()
        finished_rows = conn.execute(
            select(r.model, r.status, r.error_code, func.count())
            .where(
                r.status.in_([s.value for s in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)])
            )
            .group_by(r.model, r.status, r.error_code)
        ).all()
        w = workers.c
        live = conn.execute(
            select(w.state, func.count())
            .where(
                w.heartbeat_at >= now - heartbeat_window, w.state.in_(["loading", "idle", "busy"])
            )
            .group_by(w.state)
        ).all()
        failed = conn.execute(
            select(func.count()).where(
                w.state == "failed", w.heartbeat_at >= now - FAILED_WORKERS_FOR
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
    finished = {(m, s, code or ""): int(n) for m, s, code, n in finished_rows}
    known = tuple(dict.fromkeys([*models, *queued, *running, *(k[0] for k in finished)]))
    wait = _histograms(
        engine,
        _seconds(engine, r.started_at, r.created_at),
        WAIT_BUCKETS,
        [r.model],
        r.started_at.is_not(None),
    )
    run = _histograms(
        engine,
        _seconds(engine, r.finished_at, r.started_at),
        RUN_BUCKETS,
        [r.model, r.status],
        and_(r.started_at.is_not(None), r.finished_at.is_not(None)),
    )
    peak = cast(r.result[("metadata", PEAK_GPU_MEMORY_KEY)].as_float(), Float)
    gpu_memory = _histograms(
        engine,
        peak,
        GPU_MEMORY_BUCKETS,
        [r.model],
        and_(r.status == Status.COMPLETED.value, peak.is_not(None)),
    )
    states = (
        dict.fromkeys(WORKER_STATES, 0) | {s: int(n) for s, n in live} | {"failed": int(failed)}
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


def render(engine: Engine, models: Sequence[str], heartbeat_window: dt.timedelta) -> bytes:
    """The text exposition format of the current figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(engine, models, heartbeat_window))
    return generate_latest(registry)
