"""framecast.db.backend: the upsert on both databases, and PostgreSQL's one LISTEN connection per
process, shared by every subscriber (the workers' wake-ups, the API's status watcher)."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable

import anyio
import pytest
from sqlalchemy import Engine, create_engine, text

from framecast.db import create_db_engine, idempotency_keys, migrate, submit_counters, utcnow
from framecast.db.backend import listener_for, notify, upsert
from framecast.queue import status_watch
from framecast.queue.jobs import QUEUE_CHANNEL, JobStore
from framecast.queue.status_watch import STATUS_CHANNEL, StatusWatch
from framecast.queue.wakeup import ListenWaiter

HANG_S = 30.0
"""A hang guard for what an event ends: a working listener takes milliseconds."""


class Heard:
    """A subscriber's callbacks: the payloads and listening changes, in order."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self.listening: list[bool] = []
        self._changed = threading.Condition()

    def notified(self, payload: str) -> None:
        with self._changed:
            self.payloads.append(payload)
            self._changed.notify_all()

    def listening_changed(self, listening: bool) -> None:
        with self._changed:
            self.listening.append(listening)
            self._changed.notify_all()

    def wait_for(self, what: str, test: Callable[[Heard], bool]) -> None:
        with self._changed:
            heard = self._changed.wait_for(lambda: test(self), HANG_S)
            assert heard, f"never heard {what}: {self.payloads}, {self.listening}"


def test_upsert_inserts_then_updates_or_does_nothing(db: Engine) -> None:
    t = submit_counters
    with db.begin() as conn:
        counts = [
            conn.execute(
                upsert(
                    conn,
                    t,
                    {"owner": "o", "window_start": 7, "submits": 1},
                    key=[t.c.owner],
                    update={"submits": t.c.submits + 1},
                ).returning(t.c.submits)
            ).scalar_one()
            for _ in range(3)
        ]
    assert counts == [1, 2, 3]

    k = idempotency_keys
    row = {"owner": "o", "key": "k", "body_hash": "h", "created_at": utcnow()}
    with db.begin() as conn:
        first = conn.execute(
            upsert(conn, k, {**row, "request_id": "r1"}, key=[k.c.owner, k.c.key]).returning(
                k.c.request_id
            )
        ).scalar_one_or_none()
        second = conn.execute(
            upsert(conn, k, {**row, "request_id": "r2"}, key=[k.c.owner, k.c.key]).returning(
                k.c.request_id
            )
        ).scalar_one_or_none()
        kept = conn.execute(text("SELECT request_id FROM idempotency_keys")).scalars().all()
    assert (first, second, kept) == ("r1", None, ["r1"])  # DO NOTHING: the first one stays


def test_one_listener_hands_each_notify_to_every_subscriber_and_survives_a_lost_connection(
    pg_schema_url: str, pg_url: str
) -> None:
    # A channel of its own: NOTIFY channels belong to the database, which other tests share.
    channel = f"fc_test_{uuid.uuid4().hex}"
    listener = listener_for(pg_schema_url)
    assert listener is not None and listener_for(pg_schema_url) is listener
    a, b = Heard(), Heard()
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    sub_a = listener.subscribe(channel, a.notified, a.listening_changed)
    sub_b = listener.subscribe(channel, b.notified, b.listening_changed)
    try:
        assert sub_a.wait_tried(HANG_S) and sub_b.wait_tried(HANG_S)
        pid = listener.backend_pid
        assert pid is not None
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_notify(:c, 'one')"), {"c": channel})
        for heard in (a, b):
            heard.wait_for("'one'", lambda h: h.payloads == ["one"])

        # The connection dies: both hear it, and both listen again on a new one.
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for heard in (a, b):
            heard.wait_for("the loss and the return", lambda h: h.listening == [True, False, True])
        assert listener.backend_pid not in (None, pid)

        sub_a.close()  # b still hears; a, earlier in the list, would have heard it first
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_notify(:c, 'two')"), {"c": channel})
        b.wait_for("'two'", lambda h: h.payloads == ["one", "two"])
        assert a.payloads == ["one"]
    finally:
        sub_a.close()
        sub_b.close()
        admin.dispose()
    # The last subscription closed: the thread ended and closed the connection.
    assert listener.backend_pid is None and listener.channels == set()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_worker_waiter_and_the_status_watch_share_one_connection_and_both_hear(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One status change (a request given back to the queue) NOTIFYs the queue's channel and
    the status channel: the wake-up and the status watcher of one process both hear it, through
    the same LISTEN connection."""
    # Only a NOTIFY can deliver: the watcher's sweeps and the waiter's poll are far apart.
    monkeypatch.setattr(status_watch, "LISTEN_FALLBACK_S", 600.0)
    poll_s = 600.0
    engine = create_db_engine(pg_schema_url)
    migrate(engine)
    jobs = JobStore(engine, lease_seconds=30, max_attempts=3)
    job = jobs.submit(owner="o", model="m", input={}, image_key="k")
    lease = jobs.claim("w")
    assert lease is not None and lease.request_id == job.id
    watch = StatusWatch(engine, poll_seconds=poll_s, heartbeat_window=dt.timedelta(seconds=15))
    stop = threading.Event()
    waiter = ListenWaiter(pg_schema_url, stop)
    try:
        with watch.follow(job.id) as following:
            first = await following.next(HANG_S)
            assert first is not None and first.job.status == "in_progress"
            with anyio.fail_after(HANG_S):
                while watch.interval != status_watch.LISTEN_FALLBACK_S:
                    await anyio.sleep(0.02)
            await anyio.to_thread.run_sync(waiter.wait, 0.0)  # subscribed and listening
            assert waiter.listener is listener_for(pg_schema_url)
            assert waiter.listener.channels == {QUEUE_CHANNEL, STATUS_CHANNEL}

            released = time.monotonic()
            assert await anyio.to_thread.run_sync(jobs.release, lease)
            changed = await following.next(HANG_S)
            assert changed is not None, "the status NOTIFY never reached the watcher"
            assert changed.job.status == "in_queue" and changed.queue_position == 0
            # The waiter heard the queue's NOTIFY while it was not waiting: its wait ends at
            # once instead of after its poll interval.
            await anyio.to_thread.run_sync(waiter.wait, HANG_S)
            assert time.monotonic() - released < HANG_S, "the queue's NOTIFY never woke it"
    finally:
        waiter.close()
        watch.close()
        engine.dispose()


def test_notify_reaches_listeners_at_commit_only(pg_schema_url: str) -> None:
    channel = f"fc_test_{uuid.uuid4().hex}"
    listener = listener_for(pg_schema_url)
    assert listener is not None
    heard = Heard()
    subscription = listener.subscribe(channel, heard.notified)
    engine = create_db_engine(pg_schema_url)
    try:
        assert subscription.wait_tried(HANG_S)
        with engine.connect() as conn:
            notify(conn, channel, "rolled back")
            conn.rollback()
        with engine.begin() as conn:
            notify(conn, channel, "committed")
        heard.wait_for("the committed NOTIFY", lambda h: h.payloads != [])
        assert heard.payloads == ["committed"]
    finally:
        subscription.close()
        engine.dispose()
