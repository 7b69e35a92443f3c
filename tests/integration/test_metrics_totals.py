"""``/metrics`` at any history: the finished requests and the histograms are totals kept by the
status changes themselves (exact after every kind of change, and after the migration that fills
them from the requests already there), a scrape's work does not grow with the requests ever
finished, each process reuses a scrape for a few seconds, and FRAMECAST_METRICS_TOKEN guards it."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select, text, update

from framecast.api import metrics
from framecast.api.scrape_cache import ScrapeCache
from framecast.db import create_db_engine, migrate, requests, utcnow
from framecast.engines.base import PEAK_GPU_MEMORY_KEY
from framecast.queue.jobs import JobStore, Lease
from framecast.queue.results import VideoResult
from framecast.states import Status
from tests.integration.inprocess import (
    KEY,
    SUBMIT,
    assert_error,
    client_for,
    make_app,
    services_of,
    submit,
)
from tests.integration.test_metrics import MODEL, OTHER, WINDOW, sample, samples

GIB = 1024**3
FINISHED = "framecast_requests_finished_total"


def scrape(db: Engine) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return samples(metrics.render(db, [MODEL, OTHER], WINDOW).decode())


def finished_in_the_table(db: Engine) -> dict[tuple[str, str, str], int]:
    """The finished requests counted from the requests themselves, as /metrics once did."""
    r = requests.c
    with db.connect() as conn:
        rows = conn.execute(
            select(r.model, r.status, r.error_code, func.count())
            .where(r.status.in_(["completed", "failed", "cancelled"]))
            .group_by(r.model, r.status, r.error_code)
        ).all()
    return {(m, s, code or ""): int(n) for m, s, code, n in rows}


def finished_in_the_scrape(parsed: dict[Any, float]) -> dict[tuple[str, str, str], int]:
    out = {}
    for (name, labels), value in parsed.items():
        if name == FINISHED:
            d = dict(labels)
            out[(d["model"], d["status"], d["error_code"])] = int(value)
    return out


def expire(db: Engine, request_id: str) -> None:
    """Its worker stopped renewing the lease a second ago."""
    with db.begin() as conn:
        conn.execute(
            update(requests)
            .where(requests.c.id == request_id)
            .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
        )


def test_the_totals_follow_every_kind_of_status_change(db: Engine) -> None:
    jobs = JobStore(db, lease_seconds=30, max_attempts=2)

    def queued() -> str:
        return jobs.submit(owner="o", model=MODEL, input={}, image_key="inputs/x.png").id

    def claimed(request_id: str) -> Lease:
        lease = jobs.claim("w1", models=[MODEL])
        assert lease is not None and lease.request_id == request_id
        return lease

    completed = queued()
    peak = {PEAK_GPU_MEMORY_KEY: 30 * GIB}
    assert jobs.complete(
        claimed(completed), VideoResult(video_key="v.mp4", poster_key="p.jpg", metadata=peak)
    )

    cancelled_queued = queued()
    assert jobs.cancel(cancelled_queued, "o") is not None

    released = queued()  # back to the queue by its worker, then failed by the next one
    assert jobs.release(claimed(released))
    assert jobs.fail(claimed(released), "engine_error", "boom")

    cancelled_running = queued()
    lease = claimed(cancelled_running)
    assert jobs.cancel(cancelled_running, "o") is not None
    assert jobs.finish_cancelled(lease)

    lost = queued()  # its workers vanish twice: max_attempts=2
    for moved_to in (Status.IN_QUEUE, Status.FAILED):
        claimed(lost)
        expire(db, lost)
        assert jobs.requeue_expired() == [(lost, moved_to)]

    lost_while_cancelling = queued()
    claimed(lost_while_cancelling)
    assert jobs.cancel(lost_while_cancelling, "o") is not None
    expire(db, lost_while_cancelling)
    assert jobs.requeue_expired() == [(lost_while_cancelling, Status.CANCELLED)]

    claimed(queued())  # one runs, one waits
    queued()

    parsed = scrape(db)
    assert finished_in_the_scrape(parsed) == finished_in_the_table(db)
    assert finished_in_the_table(db) == {
        (MODEL, "completed", ""): 1,
        (MODEL, "cancelled", ""): 3,
        (MODEL, "failed", "engine_error"): 1,
        (MODEL, "failed", "worker_lost"): 1,
    }
    assert sample(parsed, "framecast_queue_depth", model=MODEL) == 1
    assert sample(parsed, "framecast_requests_running", model=MODEL) == 1
    # Every start is one wait: released and lost started twice each.
    assert sample(parsed, "framecast_request_wait_seconds_count", model=MODEL) == 8
    # Every finish from running is one run; the request cancelled while queued never ran.
    run = "framecast_request_run_seconds_count"
    assert sample(parsed, run, model=MODEL, status="completed") == 1
    assert sample(parsed, run, model=MODEL, status="failed") == 2
    assert sample(parsed, run, model=MODEL, status="cancelled") == 2
    assert sample(parsed, "framecast_request_peak_gpu_memory_bytes_count", model=MODEL) == 1


def test_the_migration_counts_the_requests_already_there(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        migrate(engine, "0006")
        now = utcnow()
        started, finished = now - dt.timedelta(seconds=90), now  # waited 10 s, ran 90 s
        with_peak = {"metadata": {PEAK_GPU_MEMORY_KEY: 30 * GIB}}
        there = [  # status, started_at, finished_at, error_code, result
            ("completed", started, finished, None, with_peak),
            ("completed", started, finished, None, {"metadata": {}}),
            ("failed", started, finished, "engine_error", None),
            ("cancelled", started, finished, None, None),
            ("cancelled", None, finished, None, None),  # while queued: it never ran
            ("in_progress", started, None, None, None),
            ("in_queue", None, None, None, None),
        ]
        rows = [
            {
                "id": f"r{i}",
                "owner": "o",
                "model": OTHER,
                "status": status,
                "input": {},
                "image_key": "inputs/x",
                "created_at": now - dt.timedelta(seconds=100),
                "updated_at": now,
                "started_at": start,
                "finished_at": end,
                "attempts": 1,
                "error_code": code,
                "result": result,
            }
            for i, (status, start, end, code, result) in enumerate(there)
        ]
        with engine.begin() as conn:
            conn.execute(insert(requests), rows)

        migrate(engine)
        parsed = scrape(engine)
        assert finished_in_the_scrape(parsed) == {
            (OTHER, "completed", ""): 2,
            (OTHER, "failed", "engine_error"): 1,
            (OTHER, "cancelled", ""): 2,
        }
        wait = "framecast_request_wait_seconds"
        assert sample(parsed, f"{wait}_bucket", model=OTHER, le="5.0") == 0
        assert sample(parsed, f"{wait}_bucket", model=OTHER, le="15.0") == 5  # 4 ended, 1 runs
        assert sample(parsed, f"{wait}_sum", model=OTHER) == pytest.approx(50, abs=0.1)
        run = {"model": OTHER, "status": "completed"}
        assert sample(parsed, "framecast_request_run_seconds_bucket", **run, le="60.0") == 0
        assert sample(parsed, "framecast_request_run_seconds_bucket", **run, le="120.0") == 2
        assert sample(parsed, "framecast_request_run_seconds_sum", **run) == pytest.approx(180)
        cancelled = {"model": OTHER, "status": "cancelled"}
        assert sample(parsed, "framecast_request_run_seconds_count", **cancelled) == 1
        peak = "framecast_request_peak_gpu_memory_bytes"
        assert sample(parsed, f"{peak}_bucket", model=OTHER, le=repr(24.0 * GIB)) == 0
        assert sample(parsed, f"{peak}_count", model=OTHER) == 1

        # The totals go on from there.
        jobs = JobStore(engine, lease_seconds=30, max_attempts=2)
        lease = jobs.claim("w1")
        assert lease is not None and jobs.fail(lease, "engine_error", "again")
        after = scrape(engine)
        assert finished_in_the_scrape(after) == finished_in_the_table(engine)
        assert sample(after, FINISHED, model=OTHER, status="failed", error_code="engine_error") == 2
    finally:
        engine.dispose()


# --- what a scrape costs ---------------------------------------------------------------------


def add_history(db: Engine, count: int) -> None:
    """``count`` finished requests written straight into the table: the history a scrape must
    not read. (The totals do not include them: only the cost is measured here.)"""
    now = utcnow()
    with db.begin() as conn:
        conn.execute(
            insert(requests),
            [
                {
                    "id": f"h{i}-{count}",
                    "owner": "o",
                    "model": MODEL,
                    "status": ("completed", "failed", "cancelled")[i % 3],
                    "input": {"prompt": "p"},
                    "image_key": "inputs/x",
                    "created_at": now,
                    "updated_at": now,
                    "started_at": now,
                    "finished_at": now,
                    "attempts": 1,
                    "error_code": "engine_error" if i % 3 == 1 else None,
                    "result": {"metadata": {PEAK_GPU_MEMORY_KEY: GIB}} if i % 3 == 0 else None,
                }
                for i in range(count)
            ],
        )
        if conn.dialect.name == "postgresql":
            # What autovacuum does after a bulk load: the planner learns the table's shape.
            conn.execute(text("ANALYZE requests"))


@contextmanager
def sqlite_steps(db: Engine) -> Iterator[list[int]]:
    """SQLite virtual machine instructions run on ``db``'s connections while inside (in tens)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.set_progress_handler(count, 10)

    def on_checkin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_progress_handler(None, 10)

    event.listen(db, "checkout", on_checkout)
    event.listen(db, "checkin", on_checkin)
    try:
        yield steps
    finally:
        event.remove(db, "checkout", on_checkout)
        event.remove(db, "checkin", on_checkin)


def _rows_read(plan: dict[str, Any]) -> int:
    """Table and index rows a PostgreSQL plan node (and those under it) read, per EXPLAIN
    ANALYZE: those it returned and those it read and threw away."""
    read = 0
    if "Relation Name" in plan:
        returned = plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
        removed = plan.get("Rows Removed by Filter", 0) + plan.get(
            "Rows Removed by Index Recheck", 0
        )
        read += int(returned + removed)
    return read + sum(_rows_read(child) for child in plan.get("Plans", []))


def pg_rows_read(db: Engine, statements: list[tuple[str, Any]]) -> int:
    total = 0
    with db.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for statement, parameters in statements:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            row = cursor.fetchone()
            assert row is not None
            plan = json.loads(row[0]) if isinstance(row[0], str) else row[0]
            total += _rows_read(plan[0]["Plan"])
        cursor.close()
    return total


def work(db: Engine, run: Any) -> int:
    """How much the database did for ``run()``: SQLite's instructions, PostgreSQL's rows read."""
    if db.dialect.name == "sqlite":
        with sqlite_steps(db) as steps:
            run()
        return steps[0]
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(db, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(db, "before_cursor_execute", record)
    return pg_rows_read(db, statements)


def test_a_scrape_costs_the_same_however_many_requests_finished_before(db: Engine) -> None:
    jobs = JobStore(db, lease_seconds=30, max_attempts=2)
    for _ in range(3):  # some that wait, one that runs
        jobs.submit(owner="o", model=MODEL, input={}, image_key="inputs/x.png")
    assert jobs.claim("w1") is not None

    def one_scrape() -> None:
        metrics.render(db, [MODEL, OTHER], WINDOW)

    def read_the_history() -> None:  # what the scrape once did: every finished row
        with db.connect() as conn:
            conn.execute(select(func.sum(requests.c.attempts))).scalar_one()

    add_history(db, 200)
    small, small_history = work(db, one_scrape), work(db, read_the_history)
    add_history(db, 4800)
    large, large_history = work(db, one_scrape), work(db, read_the_history)

    # The measure sees a read of the table grow with it (25x the rows)...
    assert large_history > 10 * small_history
    # ...and a scrape not at all (a B-tree a level deeper may cost a few steps more).
    assert large <= small * 1.1 + 10, (small, large)


# --- per process: the cache and the token -----------------------------------------------------


@pytest.mark.anyio
async def test_each_process_reuses_a_scrape_for_the_configured_seconds(tmp_path: Path) -> None:
    app = make_app(tmp_path, metrics_cache_seconds=30)
    now = [1000.0]
    services_of(app).metrics_cache.clock = lambda: now[0]
    async with client_for(app) as client:
        first = await client.get("/metrics")
        assert sample(samples(first.text), "framecast_queue_depth", model=MODEL) == 0
        await submit(client, SUBMIT)

        now[0] += 29.9
        cached = await client.get("/metrics")
        assert cached.text == first.text

        now[0] += 0.1  # 30 s after the first scrape read the database
        fresh = await client.get("/metrics")
    assert sample(samples(fresh.text), "framecast_queue_depth", model=MODEL) == 1


def test_scrapes_that_arrive_during_a_render_wait_for_it_instead_of_rendering() -> None:
    cache = ScrapeCache(5.0, clock=lambda: 0.0)
    callers = 8
    arrived = threading.Semaphore(0)
    rendering = threading.Event()
    renders: list[int] = []

    def render() -> bytes:
        renders.append(1)
        rendering.set()
        for _ in range(callers - 1):  # until every other caller has come for a scrape
            assert arrived.acquire(timeout=30)
        return b"figures"

    answers: list[bytes] = []

    def scrape_once(first: bool) -> None:
        if not first:
            arrived.release()
        answers.append(cache.get(render))

    threads = [threading.Thread(target=scrape_once, args=(i == 0,)) for i in range(callers)]
    threads[0].start()
    assert rendering.wait(30)  # the first caller is rendering
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == [b"figures"] * callers
    assert len(renders) == 1


@pytest.mark.anyio
async def test_the_metrics_token_when_set(tmp_path: Path) -> None:
    app = make_app(tmp_path, metrics_token="scrape-secret-1234")
    async with client_for(app, key=None) as anonymous:
        body = assert_error(await anonymous.get("/metrics"), 401, "unauthorized")
        assert "FRAMECAST_METRICS_TOKEN" in body["error"]["message"]
        for presented in (KEY, "scrape-secret-123", "scrape-secret-12345"):  # an API key opens
            r = await anonymous.get(  # nothing here, nor a near miss
                "/metrics", headers={"Authorization": f"Bearer {presented}"}
            )
            assert_error(r, 401, "unauthorized")
        r = await anonymous.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1234"})
    assert r.status_code == 200, r.text
    assert sample(samples(r.text), "framecast_queue_depth", model=MODEL) == 0


@pytest.mark.anyio
async def test_without_a_token_metrics_is_open(tmp_path: Path) -> None:
    async with client_for(make_app(tmp_path), key=None) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 200
