"""``GET /metrics``: the figures come from the database at scrape time (so any API node gives
the fleet's), parse as Prometheus' text format, and move as requests queue, run and finish."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, update

from framecast.api import metrics
from framecast.db import requests, utcnow
from framecast.engines.base import PEAK_GPU_MEMORY_KEY
from framecast.queue.jobs import JobStore
from framecast.queue.registry import WorkerRegistry, WorkerState
from framecast.queue.results import VideoResult
from tests.integration.inprocess import SUBMIT, client_for, make_app, run_worker, submit

MODEL = "tencent/hunyuan/image-to-video"
OTHER = "tencent/hunyuan-video-v1.5/image-to-video"
WINDOW = dt.timedelta(seconds=15)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return parsed[(name, frozenset(labels.items()))]


def backdate(db: Engine, request_id: str, **ages: dt.timedelta) -> None:
    """Set the request's timestamps to these ages before now (created_at=..., started_at=...)."""
    now = utcnow()
    with db.begin() as conn:
        conn.execute(
            update(requests)
            .where(requests.c.id == request_id)
            .values(**{column: now - age for column, age in ages.items()})
        )


def test_snapshot_on_both_databases(db: Engine) -> None:
    jobs = JobStore(db, lease_seconds=30, max_attempts=2)
    registry = WorkerRegistry(db)
    queued = [
        jobs.submit(owner="o", model=MODEL, input={}, image_key=f"inputs/q{i}/x.png").id
        for i in range(3)
    ]
    backdate(db, queued[0], created_at=dt.timedelta(seconds=90))

    # The histograms observe each change as it happens: the timestamps are set before it.
    done = jobs.submit(owner="o", model=OTHER, input={}, image_key="inputs/d/x.png").id
    backdate(db, done, created_at=dt.timedelta(seconds=10))
    lease = jobs.claim("w1", models=[OTHER])  # waited 10 s
    assert lease is not None and lease.request_id == done
    result = VideoResult(
        video_key="outputs/d/video.mp4",
        poster_key="outputs/d/poster.jpg",
        metadata={"engine": "hunyuan", PEAK_GPU_MEMORY_KEY: 30 * 1024**3},
    )
    backdate(db, done, started_at=dt.timedelta(seconds=90))
    assert jobs.complete(lease, result)  # ran 90 s
    failed = jobs.submit(owner="o", model=OTHER, input={}, image_key="inputs/f/x.png").id
    lease = jobs.claim("w1", models=[OTHER])
    assert lease is not None and lease.request_id == failed
    assert jobs.fail(lease, "engine_error", "boom")

    registry.register("w-idle", "h", 1, serves=[MODEL])
    registry.beat("w-idle", state=WorkerState.IDLE)
    registry.register("w-failed", "h", 2, serves=[MODEL])
    registry.beat("w-failed", state=WorkerState.FAILED, reason="no GPU")
    registry.register("w-stopped", "h", 3)
    registry.beat("w-stopped", state=WorkerState.STOPPED)

    parsed = samples(metrics.render(db, [MODEL, OTHER], WINDOW).decode())

    assert sample(parsed, "framecast_queue_depth", model=MODEL) == 3
    assert sample(parsed, "framecast_queue_depth", model=OTHER) == 0
    assert 89 <= sample(parsed, "framecast_queue_oldest_age_seconds", model=MODEL) < 120
    assert sample(parsed, "framecast_queue_oldest_age_seconds", model=OTHER) == 0
    assert (
        sample(
            parsed,
            "framecast_requests_finished_total",
            model=OTHER,
            status="completed",
            error_code="",
        )
        == 1
    )
    assert (
        sample(
            parsed,
            "framecast_requests_finished_total",
            model=OTHER,
            status="failed",
            error_code="engine_error",
        )
        == 1
    )
    # Waited 10 s: not in the 5 s bucket, in the 15 s one.
    assert (
        sample(parsed, "framecast_request_wait_seconds_bucket", model=OTHER, le="5.0") == 1
    )  # the failed one, ~0 s
    assert sample(parsed, "framecast_request_wait_seconds_bucket", model=OTHER, le="15.0") == 2
    assert sample(parsed, "framecast_request_wait_seconds_count", model=OTHER) == 2
    # Ran 90 s: above 60, within 120.
    run = {"model": OTHER, "status": "completed"}
    assert sample(parsed, "framecast_request_run_seconds_bucket", **run, le="60.0") == 0
    assert sample(parsed, "framecast_request_run_seconds_bucket", **run, le="120.0") == 1
    assert sample(parsed, "framecast_request_run_seconds_sum", **run) == pytest.approx(90, abs=2)
    # 30 GiB recorded by the engine: above the 24 GiB bound, within the 32 GiB one.
    gib = 1024.0**3
    peak = "framecast_request_peak_gpu_memory_bytes"
    assert sample(parsed, f"{peak}_bucket", model=OTHER, le=repr(24 * gib)) == 0
    assert sample(parsed, f"{peak}_bucket", model=OTHER, le=repr(32 * gib)) == 1
    assert sample(parsed, f"{peak}_count", model=OTHER) == 1  # the failed one recorded none
    assert sample(parsed, "framecast_workers", state=WorkerState.IDLE) == 1
    assert sample(parsed, "framecast_workers", state=WorkerState.FAILED) == 1
    assert sample(parsed, "framecast_workers", state=WorkerState.BUSY) == 0


@pytest.mark.anyio
async def test_the_route_follows_a_request_through_the_api(tmp_path: Path) -> None:
    app = make_app(tmp_path, metrics_cache_seconds=0)  # every scrape reads the database
    async with client_for(app, key=None) as anonymous, client_for(app) as client:
        r = await anonymous.get("/metrics")  # no key: a scraper has none
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        assert sample(samples(r.text), "framecast_queue_depth", model=MODEL) == 0

        await submit(client, SUBMIT)
        before = samples((await anonymous.get("/metrics")).text)
        assert sample(before, "framecast_queue_depth", model=MODEL) == 1

        run_worker(app)
        after = samples((await anonymous.get("/metrics")).text)
    assert sample(after, "framecast_queue_depth", model=MODEL) == 0
    assert (
        sample(
            after,
            "framecast_requests_finished_total",
            model=MODEL,
            status="completed",
            error_code="",
        )
        == 1
    )
    assert (
        sample(after, "framecast_request_run_seconds_count", model=MODEL, status="completed") == 1
    )
