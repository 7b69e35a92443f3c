"""What ``/metrics`` reports about finished requests, kept as totals while requests change state.

Counting the finished requests and bucketing their durations at each scrape read the whole
requests table, whose finished rows only ever grow: 1.6-2.2 s per scrape at 200k requests.
Instead, :meth:`framecast.queue.jobs.JobStore._transition` calls :func:`record` in the transaction of
every status change it makes, and the change adds to a few rows here (one per model, status,
error code and histogram bucket): they commit with the change or not at all, so the totals stay
exact whichever process (API node, worker) made it, and a scrape reads a table whose size does
not depend on the history. Migration 0007 fills them from the requests already there.

What each histogram observes, once per status change:

- ``wait``: each start (in_queue to in_progress), seconds from submit to that start. A request
  that goes back to the queue (its worker vanished or stopped) and starts again counts again.
- ``run``: each finish from in_progress, seconds from its last start, by final status.
- ``gpu_memory``: each completion whose result records ``peak_gpu_memory_bytes``.

Changing a histogram's bounds needs a migration that re-buckets its rows (0007 writes them out).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.engine import Connection

from framecast.db import request_histograms, request_totals, requests
from framecast.db.backend import upsert
from framecast.engines.base import PEAK_GPU_MEMORY_KEY
from framecast.states import TERMINAL, Status

WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
"""Seconds from submit to a worker starting it."""
RUN_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)
"""Seconds from start to finish: a preview takes seconds, the model at 720p most of an hour."""
GIB = 1024.0**3
GPU_MEMORY_BUCKETS = tuple(g * GIB for g in (8, 16, 24, 32, 40, 48, 64, 80, 96, 141))
"""Bytes: the cards' sizes (24 GB consumer, 40/80 GB A100, 80 GB H100, 141 GB H200)."""

WAIT = "wait"
RUN = "run"
GPU_MEMORY = "gpu_memory"
BUCKETS: Mapping[str, tuple[float, ...]] = {
    WAIT: WAIT_BUCKETS,
    RUN: RUN_BUCKETS,
    GPU_MEMORY: GPU_MEMORY_BUCKETS,
}
INF = "+Inf"

RETURNED = (
    requests.c.id,
    requests.c.model,
    requests.c.created_at,
    requests.c.started_at,
    requests.c.finished_at,
    requests.c.error_code,
    requests.c.result,
)
"""The columns a status change's UPDATE returns for :func:`record` (their values after it)."""


def le(histogram: str, value: float) -> str:
    """The bucket ``value`` falls in: the smallest bound at or above it, else ``+Inf``."""
    bounds = BUCKETS[histogram]
    i = bisect.bisect_left(bounds, value)
    return repr(bounds[i]) if i < len(bounds) else INF


def _seconds(later: dt.datetime | None, earlier: dt.datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    # Two machines' clocks may disagree by a little: never a negative duration.
    return max(0.0, (later - earlier).total_seconds())


def _peak(result: Any) -> float | None:
    metadata = result.get("metadata") if isinstance(result, dict) else None
    value = metadata.get(PEAK_GPU_MEMORY_KEY) if isinstance(metadata, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def record(conn: Connection, source: Status, target: Status, row: Row[Any]) -> None:
    """Add one status change of a request (``row``: its :data:`RETURNED` columns after the
    change) to the totals, on ``conn``, inside the change's transaction."""
    observations: list[tuple[str, str, float]] = []  # (histogram, status label, value)
    if target is Status.IN_PROGRESS:
        wait = _seconds(row.started_at, row.created_at)
        if wait is not None:
            observations.append((WAIT, "", wait))
    if target in TERMINAL:
        _add_finished(conn, row.model, target, row.error_code or "")
        run = _seconds(row.finished_at, row.started_at)
        if source is Status.IN_PROGRESS and run is not None:
            observations.append((RUN, target.value, run))
        peak = _peak(row.result) if target is Status.COMPLETED else None
        if peak is not None:
            observations.append((GPU_MEMORY, "", peak))
    # Always in this order, so that two changes never wait on each other's rows (PostgreSQL).
    for histogram, status, value in sorted(observations):
        _observe(conn, histogram, row.model, status, value)


def _add_finished(conn: Connection, model: str, status: Status, error_code: str) -> None:
    t = request_totals
    conn.execute(
        upsert(
            conn,
            t,
            {"model": model, "status": status.value, "error_code": error_code, "requests": 1},
            key=[t.c.model, t.c.status, t.c.error_code],
            update={"requests": t.c.requests + 1},
        )
    )


def _observe(conn: Connection, histogram: str, model: str, status: str, value: float) -> None:
    h = request_histograms
    conn.execute(
        upsert(
            conn,
            h,
            {
                "histogram": histogram,
                "model": model,
                "status": status,
                "le": le(histogram, value),
                "observations": 1,
                "total": value,
            },
            key=[h.c.histogram, h.c.model, h.c.status, h.c.le],
            update={"observations": h.c.observations + 1, "total": h.c.total + value},
        )
    )


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    labels: tuple[str, ...]
    cumulative: tuple[int, ...]
    """Observations at or below each bucket bound, then the total (the +Inf bucket)."""
    total: float


@dataclass(frozen=True)
class Totals:
    finished: dict[tuple[str, str, str], int]
    """(model, status, error code or "") -> requests; a request cancelled by its start
    deadline counts as (model, "cancelled", "expired")."""
    histograms: dict[str, list[Histogram]]
    """Per histogram name: one per model (``run``: per model and final status)."""


def read(conn: Connection) -> Totals:
    """Every total: a row per model, status, error code and bucket, however many requests."""
    finished = {
        (m, s, code): int(n)
        for m, s, code, n in conn.execute(
            select(
                request_totals.c.model,
                request_totals.c.status,
                request_totals.c.error_code,
                request_totals.c.requests,
            )
        )
    }
    h = request_histograms.c
    buckets: dict[tuple[str, str, str], list[tuple[float, int, float]]] = {}
    for name, model, status, bound, count, total in conn.execute(
        select(h.histogram, h.model, h.status, h.le, h.observations, h.total)
    ):
        buckets.setdefault((name, model, status), []).append(
            (float(bound), int(count), float(total))
        )
    histograms: dict[str, list[Histogram]] = {name: [] for name in BUCKETS}
    for (name, model, status), rows in sorted(buckets.items()):
        if name not in BUCKETS:
            continue  # written by a newer version of framecast
        labels = (model, status) if name == RUN else (model,)
        histograms[name].append(_cumulative(labels, BUCKETS[name], rows))
    return Totals(finished, histograms)


def _cumulative(
    labels: tuple[str, ...], bounds: Sequence[float], rows: list[tuple[float, int, float]]
) -> Histogram:
    below = tuple(sum(n for upper, n, _ in rows if upper <= bound) for bound in bounds)
    count = sum(n for _, n, _ in rows)
    return Histogram(labels, (*below, count), sum(total for _, _, total in rows))
