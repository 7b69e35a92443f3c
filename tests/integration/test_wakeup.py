"""Idle workers wake on PostgreSQL NOTIFY, and keep working when the LISTEN connection breaks."""

from __future__ import annotations

import threading
import time

from sqlalchemy import create_engine, text

from framecast.db import create_db_engine, migrate
from framecast.jobs import JobStore
from framecast.wakeup import ListenWaiter, PollingWaiter, waiter_for

MODEL = "tencent/hunyuan/image-to-video"


def _submit_later(store: JobStore, delay: float) -> None:
    def go() -> None:
        time.sleep(delay)
        store.submit(owner="o", model=MODEL, input={}, image_key="inputs/x")

    threading.Thread(target=go, daemon=True).start()


def test_a_submit_wakes_a_listening_worker_long_before_its_poll_interval(
    pg_schema_url: str,
) -> None:
    engine = create_db_engine(pg_schema_url)
    migrate(engine)
    store = JobStore(engine, lease_seconds=30, max_attempts=2)
    stop = threading.Event()
    waiter = waiter_for(pg_schema_url, stop)
    assert isinstance(waiter, ListenWaiter)
    try:
        waiter.wait(0.01)  # connected and listening
        _submit_later(store, 0.3)
        started = time.monotonic()
        waiter.wait(60)
        assert time.monotonic() - started < 10  # woken, not timed out
        assert store.claim("w", models=[MODEL]) is not None
    finally:
        waiter.close()
        engine.dispose()


def test_a_broken_listen_connection_falls_back_to_polling_and_reconnects(
    pg_schema_url: str, pg_url: str
) -> None:
    engine = create_db_engine(pg_schema_url)
    migrate(engine)
    store = JobStore(engine, lease_seconds=30, max_attempts=2)
    stop = threading.Event()
    waiter = ListenWaiter(pg_schema_url, stop)
    try:
        waiter.wait(0.01)
        pid = waiter._conn.info.backend_pid
        admin = create_engine(pg_url)
        with admin.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.dispose()
        started = time.monotonic()
        waiter.wait(2.0)  # the broken connection is noticed; the wait still ends on time
        assert time.monotonic() - started < 10
        _submit_later(store, 0.3)
        waiter.wait(60)  # reconnected: woken by the next submit
        assert waiter._conn is not None and waiter._conn.info.backend_pid != pid
    finally:
        waiter.close()
        engine.dispose()


def test_sqlite_workers_poll(tmp_path: object) -> None:
    stop = threading.Event()
    assert isinstance(waiter_for("sqlite:////tmp/x.db", stop), PollingWaiter)
    stop.set()
    started = time.monotonic()
    PollingWaiter(stop).wait(30)  # a stopping worker does not sit out its poll interval
    assert time.monotonic() - started < 5
