"""The outbox on real databases (SQLite and PostgreSQL): a delivery row commits with the status
change it reports, or neither does; which changes are reported; deliveries claimed under a
lease, retried with back-off and given up on after the window."""

from __future__ import annotations

import datetime as dt
import threading
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, Table, func, insert, select, update

from framecast.db import request_webhooks, requests, utcnow, webhook_deliveries
from framecast.queue.jobs import Job, JobStore, StatusChange, StatusListener
from framecast.queue.results import VideoResult
from framecast.settings import Settings
from framecast.states import Status
from framecast.webhooks.job_stores import build_job_store
from framecast.webhooks.outbox import WebhookTarget, new_delivery_id, record_change, register
from framecast.webhooks.store import BROKE_OFF, DeliveryState, DeliveryStore, RetryPolicy

MODEL = "tencent/hunyuan/image-to-video"
TARGET = WebhookTarget("https://hooks.example.com/x", intermediate=False, base_url="http://api")


def _store(db: Engine, *extra: StatusListener) -> JobStore:
    return JobStore(db, lease_seconds=30, max_attempts=3, listeners=[record_change, *extra])


def _submit(store: JobStore, target: WebhookTarget | None = TARGET) -> str:
    return store.submit(
        owner="alice",
        model=MODEL,
        input={"prompt": "p"},
        image_key="inputs/x",
        also=partial(register, target=target) if target else None,
    ).id


def _result() -> VideoResult:
    return VideoResult(
        video_key="outputs/r/video.mp4", poster_key="outputs/r/poster.jpg", metadata={}
    )


def _events(db: Engine, request_id: str) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute(
            select(webhook_deliveries.c.event)
            .where(webhook_deliveries.c.request_id == request_id)
            .order_by(webhook_deliveries.c.seq)
        ).all()
    return [row.event for row in rows]


def _count(db: Engine, table: Table) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_the_factory_gives_every_job_store_the_outbox(db: Engine, tmp_path: Path) -> None:
    store = build_job_store(db, Settings(data_dir=tmp_path))
    assert record_change in store.listeners


def test_only_the_final_status_is_reported_without_intermediate(db: Engine) -> None:
    store = _store(db)
    request_id = _submit(store)
    lease = store.claim("w")
    assert lease is not None
    assert _events(db, request_id) == []
    assert store.complete(lease, _result())
    assert _events(db, request_id) == ["completed"]
    with db.connect() as conn:
        row = conn.execute(select(webhook_deliveries)).one()
    assert row.id.startswith("msg_") and row.state == "pending" and row.attempts == 0
    assert row.url == TARGET.url and row.owner == "alice"
    assert row.payload["request_id"] == request_id and row.payload["status"] == "completed"
    assert row.payload["status_url"] == f"http://api/v1/requests/{request_id}/status"


def test_intermediate_statuses_are_reported_in_order_when_asked(db: Engine) -> None:
    store = _store(db)
    target = WebhookTarget(TARGET.url, intermediate=True, base_url="http://api")
    request_id = _submit(store, target)
    lease = store.claim("w")
    assert lease is not None and store.release(lease)  # a worker stopping: back to the queue
    lease = store.claim("w")
    assert lease is not None and store.fail(lease, "engine_error", "boom")
    assert _events(db, request_id) == [
        "in_queue",
        "in_progress",
        "in_queue",
        "in_progress",
        "failed",
    ]
    with db.connect() as conn:
        failed = conn.execute(
            select(webhook_deliveries.c.payload).where(webhook_deliveries.c.event == "failed")
        ).scalar_one()
    assert failed["error"] == {"code": "engine_error", "message": "boom"}


def test_requests_without_a_webhook_write_nothing(db: Engine) -> None:
    store = _store(db)
    _submit(store, None)
    lease = store.claim("w")
    assert lease is not None and store.complete(lease, _result())
    assert _count(db, webhook_deliveries) == 0 and _count(db, request_webhooks) == 0


def test_a_delivery_commits_with_its_status_change_or_not_at_all(db: Engine) -> None:
    def refuse_completion(conn: Connection, change: StatusChange) -> None:
        if change.target is Status.COMPLETED:
            raise RuntimeError("the database went away")

    store = _store(db, refuse_completion)
    request_id = _submit(store)
    lease = store.claim("w")
    assert lease is not None
    with pytest.raises(RuntimeError, match="went away"):
        store.complete(lease, _result())
    job = store.get(request_id)
    assert job is not None and job.status is Status.IN_PROGRESS
    assert _count(db, webhook_deliveries) == 0  # the outbox row was rolled back with it
    assert store.fail(lease, "engine_error", "boom")  # a later change still reports
    assert _events(db, request_id) == ["failed"]


def test_a_webhook_commits_with_its_request_or_not_at_all(db: Engine) -> None:
    store = _store(db)

    def register_then_fail(conn: Connection, job: Job) -> None:
        register(conn, job, target=TARGET)
        raise RuntimeError("crash after the webhook row")

    with pytest.raises(RuntimeError):
        store.submit(
            owner="a", model=MODEL, input={}, image_key="inputs/x", also=register_then_fail
        )
    assert _count(db, requests) == 0 and _count(db, request_webhooks) == 0


# --- the deliveries as a queue --------------------------------------------------------------

RETRY = RetryPolicy(
    base=dt.timedelta(seconds=0.2), cap=dt.timedelta(seconds=1), give_up_after=dt.timedelta(hours=1)
)


def _pending(db: Engine, n: int) -> list[str]:
    ids = [new_delivery_id() for _ in range(n)]
    now = utcnow()
    with db.begin() as conn:
        conn.execute(
            insert(webhook_deliveries),
            [
                {
                    "id": i,
                    "request_id": "r",
                    "owner": "alice",
                    "url": TARGET.url,
                    "event": "completed",
                    "payload": {},
                    "state": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for i in ids
            ],
        )
    return ids


def test_concurrent_claims_never_take_the_same_delivery(db: Engine) -> None:
    ids = _pending(db, 40)
    store = DeliveryStore(db, lease=dt.timedelta(minutes=1), retry=RETRY)
    taken: list[list[str]] = [[] for _ in range(4)]

    def claimer(mine: list[str]) -> None:
        while batch := store.claim(3):
            mine.extend(d.id for d in batch)

    threads = [threading.Thread(target=claimer, args=(t,)) for t in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for mine in taken for i in mine]
    assert sorted(every) == sorted(ids)  # all taken, none twice
    assert store.claim(10) == []  # all under lease now


def test_an_expired_claim_is_taken_over_and_the_old_holder_cannot_record(db: Engine) -> None:
    (delivery_id,) = _pending(db, 1)
    now = [utcnow()]  # moved on, not waited for: the lease runs out when the test says
    lease = dt.timedelta(minutes=1)
    first = DeliveryStore(db, lease=lease, retry=RETRY, clock=lambda: now[0])
    (mine,) = first.claim(1)
    now[0] += lease - dt.timedelta(seconds=1)
    assert first.claim(1) == []  # still under lease
    now[0] += dt.timedelta(seconds=2)
    (theirs,) = first.claim(1)  # a dispatcher that died mid-attempt: the row is due again
    assert theirs.id == delivery_id and theirs.lease_token != mine.lease_token
    assert not first.delivered(mine, 200)
    assert first.delivered(theirs, 200)
    (done,) = first.recent(state=DeliveryState.DELIVERED)
    assert done.attempts == 1 and done.last_status_code == 200 and done.finished_at == now[0]


def test_a_failed_attempt_backs_off_and_the_window_ends_in_failed(db: Engine) -> None:
    (delivery_id,) = _pending(db, 1)
    now = [utcnow()]
    store = DeliveryStore(db, lease=dt.timedelta(minutes=1), retry=RETRY, clock=lambda: now[0])
    (delivery,) = store.claim(1)
    assert store.attempt_failed(delivery, 500, "answered 500")
    (again,) = store.recent()
    assert again.state is DeliveryState.PENDING and again.attempts == 1
    # The first back-off: RETRY.base, plus up to 10% jitter.
    assert 0.2 <= (again.next_attempt_at - now[0]).total_seconds() <= 0.22
    now[0] += dt.timedelta(seconds=0.19)
    assert store.claim(1) == []  # not before its time
    now[0] += dt.timedelta(seconds=0.04)
    # Past the window (the change was two hours ago): no more attempts, kept for inspection.
    with db.begin() as conn:
        conn.execute(update(webhook_deliveries).values(created_at=now[0] - dt.timedelta(hours=2)))
    (delivery,) = store.claim(1)
    assert store.attempt_failed(delivery, None, "no answer within 10 s")
    (failed,) = store.recent(state=DeliveryState.FAILED)
    assert failed.id == delivery_id and failed.attempts == 2
    assert failed.last_error == "no answer within 10 s" and store.claim(1) == []


def test_a_delivery_whose_attempts_never_come_back_ends_at_the_window(db: Engine) -> None:
    """Each claim expires with no outcome (the attempt kills its dispatcher, say): retried
    while the window lasts, then failed by the next claim, with the last reason kept."""
    (delivery_id,) = _pending(db, 1)
    now = [utcnow()]
    lease = dt.timedelta(minutes=1)
    store = DeliveryStore(db, lease=lease, retry=RETRY, clock=lambda: now[0])
    (first,) = store.claim(1)
    assert store.attempt_failed(first, 503, "answered 503")  # one recorded failure first
    now[0] += dt.timedelta(seconds=2)
    (second,) = store.claim(1)  # ... then an attempt that never records anything
    now[0] += lease + dt.timedelta(seconds=1)
    (third,) = store.claim(1)  # its claim ran out inside the window: at least once
    assert third.id == second.id == delivery_id and third.lease_token != second.lease_token

    now[0] = first.created_at + RETRY.give_up_after + lease  # past the window, lease run out
    assert store.claim(1) == []
    (failed,) = store.recent()
    assert failed.state is DeliveryState.FAILED and failed.finished_at == now[0]
    assert failed.last_error == f"answered 503; then {BROKE_OFF}"
    assert failed.last_status_code == 503 and failed.lease_token is None
    assert not store.delivered(third, 200)  # a late outcome changes nothing


def test_past_the_window_an_unclaimed_delivery_gets_one_last_attempt(db: Engine) -> None:
    """A dispatcher down longer than the window (no claim ran out): one try, then it ends."""
    _pending(db, 1)
    later = utcnow() + RETRY.give_up_after + dt.timedelta(minutes=5)
    store = DeliveryStore(db, lease=dt.timedelta(minutes=1), retry=RETRY, clock=lambda: later)
    (delivery,) = store.claim(1)
    assert store.attempt_failed(delivery, None, "no answer within 10 s")
    (failed,) = store.recent(state=DeliveryState.FAILED)
    assert failed.last_error == "no answer within 10 s" and store.claim(1) == []


def test_back_off_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(
        base=dt.timedelta(seconds=5), cap=dt.timedelta(minutes=1), give_up_after=dt.timedelta(1)
    )
    delays = [policy.delay(n).total_seconds() for n in range(1, 7)]
    for got, exact in zip(delays, [5, 10, 20, 40, 60, 60], strict=True):
        assert exact <= got <= exact * 1.1
