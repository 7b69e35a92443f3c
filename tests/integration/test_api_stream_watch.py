"""StatusWatch, what streams and ``Prefer: wait`` await: one watcher per process reads for every
follower, on PostgreSQL woken at once by NOTIFY for a change made through another connection (a
worker, another node), on SQLite by its poll; and however many follow a request, the database
sees one read per sweep."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Engine, event

from framecast.queue import status_watch
from framecast.queue.jobs import JobStore
from framecast.queue.status_watch import StatusWatch

from .inprocess import client_for, make_app, services_of, submit

pytestmark = pytest.mark.anyio

WINDOW = dt.timedelta(seconds=15)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class QueryCounter:
    """Counts the statements that read ``requests`` on an engine, from any thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM requests" in statement:
            with self._lock:
                self.count += 1

    def take(self) -> int:
        with self._lock:
            count, self.count = self.count, 0
        return count


@pytest.fixture
def counted(db: Engine) -> Iterator[QueryCounter]:
    counter = QueryCounter(db)
    event.listen(db, "before_cursor_execute", counter)
    yield counter
    event.remove(db, "before_cursor_execute", counter)


async def listening(watch: StatusWatch) -> None:
    """On PostgreSQL, until the LISTEN connection is up (changes are then NOTIFY's to tell)."""
    if watch.postgres:
        with anyio.fail_after(20):
            while watch.interval != status_watch.LISTEN_FALLBACK_S:
                await anyio.sleep(0.02)


async def test_a_change_elsewhere_reaches_the_follower(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres = db.dialect.name == "postgresql"
    # With notifications the sweeps play no part: far apart, so only a NOTIFY can deliver.
    monkeypatch.setattr(status_watch, "LISTEN_FALLBACK_S", 600.0)
    watch = StatusWatch(db, poll_seconds=600.0 if postgres else 0.05, heartbeat_window=WINDOW)
    jobs = JobStore(db, lease_seconds=30, max_attempts=3)
    job = jobs.submit(owner="o", model="m", input={}, image_key="k")
    behind = jobs.submit(owner="o", model="m", input={}, image_key="k2")
    try:
        with watch.follow(job.id) as following:
            first = await following.next(30)  # read for the new follower at once
            assert first is not None and first.job.status == "in_queue"
            assert first.queue_position == 0 and first.workers_serving == 0
            await listening(watch)

            def change() -> None:
                jobs.cancel(behind.id, "o")  # another request, behind it: nothing changes here
                jobs.claim("w1")  # this one: in_queue -> in_progress

            await anyio.to_thread.run_sync(change)
            changed = await following.next(30)
            assert changed is not None, "the change never reached the follower"
            assert changed.job.status == "in_progress" and changed.job.worker_id == "w1"
            assert changed.queue_position is None and changed.workers_serving is None
    finally:
        watch.close()


async def test_a_queued_request_hears_its_position_change(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A position changes without a NOTIFY for it (another row changed): the sweep finds it.
    monkeypatch.setattr(status_watch, "LISTEN_FALLBACK_S", 0.05)
    watch = StatusWatch(db, poll_seconds=0.05, heartbeat_window=WINDOW)
    jobs = JobStore(db, lease_seconds=30, max_attempts=3)
    ahead = [jobs.submit(owner="o", model="m", input={}, image_key=f"k{i}") for i in range(2)]
    jobs.submit(owner="o", model="other", input={}, image_key="x")  # another model's queue
    job = jobs.submit(owner="o", model="m", input={}, image_key="k")
    try:
        with watch.follow(job.id) as following:
            first = await following.next(30)
            assert first is not None and first.queue_position == 2
            await anyio.to_thread.run_sync(jobs.cancel, ahead[0].id, "o")
            second = await following.next(30)
            assert second is not None and second.queue_position == 1
            assert second.job.status == "in_queue"
    finally:
        watch.close()


async def test_many_followers_of_one_request_cost_one_read_per_sweep(
    db: Engine, counted: QueryCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_watch, "LISTEN_FALLBACK_S", 0.02)  # PostgreSQL's sweeps
    watch = StatusWatch(db, poll_seconds=0.02, heartbeat_window=WINDOW)
    jobs = JobStore(db, lease_seconds=30, max_attempts=3)
    job = jobs.submit(owner="o", model="m", input={}, image_key="k")

    async def reads_per_sweep(sweeps: int) -> float:
        counted.take()
        start = watch.sweeps
        with anyio.fail_after(60):
            while watch.sweeps < start + sweeps:
                await anyio.sleep(0.01)
        return counted.take() / (watch.sweeps - start)

    try:
        with watch.follow(job.id) as one:
            assert await one.next(30) is not None
            alone = await reads_per_sweep(20)
            with contextlib.ExitStack() as stack:
                many = [stack.enter_context(watch.follow(job.id)) for _ in range(50)]
                for following in many:  # each has the request at once, read by nobody
                    assert (await following.next(0)) is not None
                assert watch.followed == 51
                crowded = await reads_per_sweep(20)
    finally:
        watch.close()
    # One statement a sweep (a sweep may straddle the count), whatever the followers.
    assert alone <= 1.5, alone
    assert crowded <= 1.5, crowded


async def test_streams_on_one_request_add_no_reads(tmp_path: Path) -> None:
    """The app: 20 open streams on one request make the database read it about as often as 1
    does (each stream used to read it every poll interval). Counted over the same number of
    poll intervals each, so a slow machine slows both alike."""
    poll = 0.05
    app = make_app(tmp_path, poll_seconds=poll, max_streams_per_key=32)
    services = services_of(app)
    counter = QueryCounter(services.db)
    event.listen(services.db, "before_cursor_execute", counter)

    async def reads_while(streams: int, client: Any, request_id: str) -> float:
        async with anyio.create_task_group() as tg:
            for _ in range(streams):
                tg.start_soon(client.get, f"/v1/requests/{request_id}/status/stream")
            await anyio.sleep(10 * poll)  # all open and past their first read
            counter.take()
            started = time.monotonic()
            await anyio.sleep(20 * poll)
            reads = counter.take() / ((time.monotonic() - started) / poll)
            tg.cancel_scope.cancel()
        return reads

    async with client_for(app) as client:
        request_id = await submit(client)  # no worker: it stays queued, its streams open
        one = await reads_while(1, client, request_id)
        twenty = await reads_while(20, client, request_id)
    event.remove(services.db, "before_cursor_execute", counter)
    # Reads per poll interval: about one (the watcher's) either way; 20 streams that each read
    # would make it 20 times one stream's.
    assert twenty < 3 * max(one, 1.0), (one, twenty)


async def test_a_failed_read_is_retried_and_the_follower_served(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = StatusWatch(db, poll_seconds=0.02, heartbeat_window=WINDOW)
    jobs = JobStore(db, lease_seconds=30, max_attempts=3)
    job = jobs.submit(owner="o", model="m", input={}, image_key="k")
    failures = iter([OSError("database away")] * 3)
    real = status_watch._versions

    def flaky(*args: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(*args)

    monkeypatch.setattr(status_watch, "_versions", flaky)
    try:
        with watch.follow(job.id) as following:
            first = await following.next(30)
        assert first is not None and first.job.id == job.id
        assert next(failures, None) is None  # it did fail, three times, before that
    finally:
        watch.close()
