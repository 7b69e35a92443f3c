"""The queue on real databases (SQLite and PostgreSQL): claims, leases, fencing, cancel, requeue."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine, update

from framecast.db import requests, utcnow
from framecast.jobs import CancelOutcome, JobStore, StepAck
from framecast.states import Status

MODEL = "tencent/hunyuan/image-to-video"


@pytest.fixture
def store(db: Engine) -> JobStore:
    return JobStore(db, lease_seconds=30, max_attempts=2)


def _submit(store: JobStore, owner: str = "alice") -> str:
    return store.submit(owner=owner, model=MODEL, input={"prompt": "p"}, image_key="inputs/x").id


def _expire(db: Engine, request_id: str) -> None:
    with db.begin() as conn:
        conn.execute(
            update(requests)
            .where(requests.c.id == request_id)
            .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
        )


def test_queue_positions_follow_submission_order_and_shift_on_claim(store: JobStore) -> None:
    ids = [_submit(store) for _ in range(3)]
    assert [store.queue_position(store.get(i)) for i in ids] == [0, 1, 2]  # type: ignore[arg-type]
    lease = store.claim("w1")
    assert lease is not None and lease.request_id == ids[0]
    assert lease.job.status is Status.IN_PROGRESS and lease.job.attempts == 1
    assert store.queue_position(lease.job) is None
    assert [store.queue_position(store.get(i)) for i in ids[1:]] == [0, 1]  # type: ignore[arg-type]


def test_claim_on_empty_queue_returns_none(store: JobStore) -> None:
    assert store.claim("w1") is None


def test_concurrent_claims_never_hand_out_a_request_twice(store: JobStore) -> None:
    ids = {_submit(store) for _ in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while (lease := store.claim(name)) is not None:
            with lock:
                claimed.append(lease.request_id)
            assert store.complete(lease, {"ok": True})

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)
    assert all(store.get(i).status is Status.COMPLETED for i in ids)  # type: ignore[union-attr]


def test_expired_lease_is_requeued_and_the_old_worker_is_fenced_out(
    db: Engine, store: JobStore
) -> None:
    request_id = _submit(store)
    old = store.claim("w1")
    assert old is not None
    _expire(db, request_id)
    assert store.requeue_expired() == [(request_id, Status.IN_QUEUE)]
    new = store.claim("w2")
    assert new is not None and new.request_id == request_id and new.job.attempts == 2
    # Every write the first worker tries now is refused.
    assert not store.renew(old)
    assert store.report_step(old, 3, 10, "rendering") is StepAck.LOST
    assert not store.complete(old, {"from": "old"})
    assert not store.fail(old, "x", "y")
    assert not store.finish_cancelled(old)
    assert not store.release(old)
    assert store.report_step(new, 3, 10, "rendering") is StepAck.CONTINUE
    assert store.complete(new, {"from": "new"})
    job = store.get(request_id)
    assert job is not None and job.status is Status.COMPLETED and job.result == {"from": "new"}


def test_a_live_lease_is_not_requeued(store: JobStore) -> None:
    _submit(store)
    lease = store.claim("w1")
    assert lease is not None and store.renew(lease)
    assert store.requeue_expired() == []


def test_request_fails_after_max_attempts(db: Engine, store: JobStore) -> None:
    request_id = _submit(store)
    for _ in range(2):
        assert store.claim("w") is not None
        _expire(db, request_id)
        store.requeue_expired()
    job = store.get(request_id)
    assert job is not None and job.status is Status.FAILED
    assert job.error_code == "worker_lost" and "2 times" in (job.error_message or "")


def test_cancel_queued_request_never_runs(store: JobStore) -> None:
    request_id = _submit(store)
    outcome = store.cancel(request_id, "alice")
    assert outcome is not None and outcome[0] is CancelOutcome.CANCELLED
    assert outcome[1].status is Status.CANCELLED
    assert store.claim("w1") is None


def test_cancel_running_request_is_seen_at_the_next_step(store: JobStore) -> None:
    request_id = _submit(store)
    lease = store.claim("w1")
    assert lease is not None
    assert store.report_step(lease, 1, 10, "rendering") is StepAck.CONTINUE
    outcome = store.cancel(request_id, "alice")
    assert outcome is not None and outcome[0] is CancelOutcome.REQUESTED
    assert outcome[1].status is Status.IN_PROGRESS
    assert store.report_step(lease, 2, 10, "rendering") is StepAck.CANCEL
    assert store.finish_cancelled(lease)
    assert store.get(request_id).status is Status.CANCELLED  # type: ignore[union-attr]


def test_cancel_of_finished_request_changes_nothing(store: JobStore) -> None:
    request_id = _submit(store)
    lease = store.claim("w1")
    assert lease is not None and store.complete(lease, {"r": 1})
    outcome = store.cancel(request_id, "alice")
    assert outcome is not None and outcome[0] is CancelOutcome.ALREADY_FINISHED
    assert store.get(request_id).status is Status.COMPLETED  # type: ignore[union-attr]


def test_expired_lease_with_cancel_requested_ends_cancelled(db: Engine, store: JobStore) -> None:
    request_id = _submit(store)
    assert store.claim("w1") is not None
    store.cancel(request_id, "alice")
    _expire(db, request_id)
    assert store.requeue_expired() == [(request_id, Status.CANCELLED)]


def test_release_gives_the_request_back_without_counting_the_attempt(store: JobStore) -> None:
    request_id = _submit(store)
    lease = store.claim("w1")
    assert lease is not None and store.release(lease)
    job = store.get(request_id)
    assert job is not None and job.status is Status.IN_QUEUE and job.attempts == 0
    assert job.lease_token is None and job.worker_id is None


def test_requests_are_scoped_to_their_owner(store: JobStore) -> None:
    request_id = _submit(store, owner="alice")
    assert store.get(request_id, "alice") is not None
    assert store.get(request_id, "mallory") is None
    assert store.cancel(request_id, "mallory") is None
    assert store.get(request_id).status is Status.IN_QUEUE  # type: ignore[union-attr]


def test_cancel_racing_claim_ends_in_exactly_one_consistent_state(store: JobStore) -> None:
    for _ in range(20):
        request_id = _submit(store)
        results: dict[str, object] = {}
        barrier = threading.Barrier(2)

        def claimer() -> None:
            barrier.wait()
            results["lease"] = store.claim("w1")

        def canceller() -> None:
            barrier.wait()
            results["cancel"] = store.cancel(request_id, "alice")

        threads = [threading.Thread(target=claimer), threading.Thread(target=canceller)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lease = results["lease"]
        kind, _job = results["cancel"]  # type: ignore[misc]
        if kind is CancelOutcome.CANCELLED:
            assert lease is None  # cancelled while queued: it never ran
        else:
            assert kind is CancelOutcome.REQUESTED and lease is not None
            assert store.report_step(lease, 1, 2, "x") is StepAck.CANCEL  # type: ignore[arg-type]
            assert store.finish_cancelled(lease)  # type: ignore[arg-type]
        assert store.get(request_id).status is Status.CANCELLED  # type: ignore[union-attr]
