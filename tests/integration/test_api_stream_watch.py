"""StatusWatch, what streams and ``Prefer: wait`` sleep on: on PostgreSQL a change made through
another connection (a worker, another node) wakes the wait at once by NOTIFY; on SQLite the
wait is a short poll."""

from __future__ import annotations

import time

import anyio
import pytest
from sqlalchemy import Engine

from framecast.jobs import JobStore
from framecast.status_watch import StatusWatch

pytestmark = pytest.mark.anyio


async def test_a_change_elsewhere_ends_the_wait(db: Engine, db_url: str) -> None:
    postgres = db.dialect.name == "postgresql"
    # With notifications the poll interval plays no part: make it long enough to tell.
    watch = StatusWatch(db_url, poll_seconds=10.0 if postgres else 0.05)
    jobs = JobStore(db, lease_seconds=30, max_attempts=3)
    job = jobs.submit(owner="o", model="m", input={}, image_key="k")
    other = jobs.submit(owner="o", model="m", input={}, image_key="k2")
    try:
        with watch.follow(job.id) as following:
            if postgres:  # the LISTEN connection is up before anything changes
                with anyio.fail_after(10):
                    while watch.interval < 1:
                        await anyio.sleep(0.02)

            def claim_later() -> None:
                time.sleep(0.3)
                jobs.cancel(other.id, "o")  # another request: wakes nobody here
                time.sleep(0.3)
                jobs.claim("w1")  # this one: in_queue -> in_progress

            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, claim_later)
                started = time.monotonic()
                await following.changed(30)
                took = time.monotonic() - started
            if postgres:
                assert 0.5 <= took < 2.0, took  # woken by its own change, not the other's
            else:
                assert took < 0.5, took
    finally:
        watch.close()
