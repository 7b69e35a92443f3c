"""Idle workers wake on PostgreSQL NOTIFY, and keep working when the LISTEN connection breaks."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from framecast.db import create_db_engine, migrate
from framecast.queue import wakeup
from framecast.queue.jobs import JobStore
from framecast.queue.wakeup import ListenWaiter, PollingWaiter, Waiter, waiter_for

MODEL = "tencent/hunyuan/image-to-video"


POLL_S = 30.0
"""The poll interval the waits below are given: a wake-up that works ends them in milliseconds."""

PROMPT_S = POLL_S / 3
"""How soon after the submit's commit a listening worker must wake: a third of the poll
interval, so only a wake-up ends the wait in time, whatever the machine's load. The waits
are cut into slices as long as the poll interval here (``slices_as_long_as_the_poll``), so
a waiter that only notices work at a slice's end fails too."""


@pytest.fixture
def slices_as_long_as_the_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait cut into 1 s slices would end 1 s in, woken or not; slices of the whole poll
    interval leave only a wake-up to end it early."""
    monkeypatch.setattr(wakeup, "_STOP_CHECK_S", POLL_S)


class SubmitLater:
    """Submit one request after ``delay`` seconds from another thread, timing the commit."""

    def __init__(self, store: JobStore, delay: float) -> None:
        self.before = self.after = float("inf")
        self._thread = threading.Thread(target=self._go, args=(store, delay), daemon=True)
        self._thread.start()

    def _go(self, store: JobStore, delay: float) -> None:
        time.sleep(delay)
        self.before = time.monotonic()
        store.submit(owner="o", model=MODEL, input={}, image_key="inputs/x")
        self.after = time.monotonic()

    def assert_woke_promptly(self, waiter: Waiter) -> None:
        """Wait a whole poll interval for the submit; it must end the wait, and soon.

        NOTIFY channels belong to the database, not the schema, so another test's submit in
        the same database (pytest -n runs them at once) may end a wait early: such a wake-up
        is waited through. Not without bound: a waiter that returns at once would end ~10^5
        waits in the 1.3 s before the submit; another test submits at most a few hundred."""
        early = 0
        while True:
            waiter.wait(POLL_S)
            woke = time.monotonic()
            if woke >= self.before:
                break
            early += 1
            assert early <= 1000, "the wait keeps ending before anything was submitted"
        self._thread.join(5)
        assert woke - self.after < PROMPT_S, (
            f"woken {woke - self.after:.2f} s after the submit committed"
        )


@pytest.mark.usefixtures("slices_as_long_as_the_poll")
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
        SubmitLater(store, 1.3).assert_woke_promptly(waiter)
        assert store.claim("w", models=[MODEL]) is not None
    finally:
        waiter.close()
        engine.dispose()


@pytest.mark.usefixtures("slices_as_long_as_the_poll")
def test_a_broken_listen_connection_falls_back_to_polling_and_reconnects(
    pg_schema_url: str, pg_url: str
) -> None:
    # A channel of its own: another test's submit (the queue's channel belongs to the database,
    # and pytest -n runs tests at once) would end the timed wait below early, rightly.
    channel = f"fc_test_{uuid.uuid4().hex}"
    stop = threading.Event()
    waiter = ListenWaiter(pg_schema_url, stop, channel)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        waiter.wait(0.01)
        pid = waiter.listener.backend_pid  # the process's one LISTEN connection
        assert pid is not None
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            gone = time.monotonic() + 60  # a hang guard: the backend exits when signalled
            alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
            while conn.execute(alive, {"pid": pid}).scalar_one():
                assert time.monotonic() < gone, "the LISTEN backend was not terminated"
                time.sleep(0.05)
        # The broken connection is noticed; the wait neither ends early (no spinning) nor
        # hangs on it: it ends once its time is up (a hang guard, not a speed bound).
        started = time.monotonic()
        waiter.wait(2.0)
        assert 2.0 <= time.monotonic() - started < 2.0 + PROMPT_S
        # Reconnected and listening: a NOTIFY ends a whole poll interval's wait at once.
        sent: list[float] = []

        def notify_later() -> None:
            time.sleep(1.3)
            sent.append(time.monotonic())
            with admin.connect() as conn:
                conn.execute(text(f"NOTIFY {channel}"))
            sent.append(time.monotonic())

        notifier = threading.Thread(target=notify_later, daemon=True)
        notifier.start()
        waiter.wait(POLL_S)
        woke = time.monotonic()
        notifier.join(5)
        assert len(sent) == 2, "the NOTIFY was not sent"
        assert sent[0] <= woke < sent[1] + PROMPT_S, "not woken by the NOTIFY after reconnecting"
        assert waiter.listener.backend_pid not in (None, pid)
    finally:
        waiter.close()
        admin.dispose()


def test_sqlite_workers_poll(tmp_path: Path) -> None:
    stop = threading.Event()
    assert isinstance(waiter_for(f"sqlite:///{tmp_path / 'x.db'}", stop), PollingWaiter)
    started = time.monotonic()
    PollingWaiter(stop).wait(0.3)
    assert time.monotonic() - started >= 0.3
    stop.set()
    started = time.monotonic()
    PollingWaiter(stop).wait(POLL_S)  # a stopping worker does not sit out its poll interval
    assert time.monotonic() - started < PROMPT_S
