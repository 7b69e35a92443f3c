"""The queue on real databases (SQLite and PostgreSQL): claims, leases, fencing, cancel, requeue."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.engine import make_url

from framecast.db import create_db_engine, migrate, requests, utcnow
from framecast.queue.jobs import CancelOutcome, Job, JobStore, Lease, StatusChange, StepAck
from framecast.queue.results import MalformedResult, VideoResult
from framecast.states import Status

MODEL = "tencent/hunyuan/image-to-video"


@pytest.fixture
def store(db: Engine) -> JobStore:
    return JobStore(db, lease_seconds=30, max_attempts=2)


def _submit(store: JobStore, owner: str = "alice") -> str:
    return store.submit(owner=owner, model=MODEL, input={"prompt": "p"}, image_key="inputs/x").id


def _job(store: JobStore, request_id: str) -> Job:
    job = store.get(request_id)
    assert job is not None, f"request {request_id} is gone"
    return job


def _result(name: str) -> VideoResult:
    return VideoResult(
        video_key=f"outputs/{name}/video.mp4",
        poster_key=f"outputs/{name}/poster.jpg",
        metadata={"engine": name},
    )


def _expire(db: Engine, request_id: str) -> None:
    with db.begin() as conn:
        conn.execute(
            update(requests)
            .where(requests.c.id == request_id)
            .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
        )


def test_queue_positions_follow_submission_order_and_shift_on_claim(store: JobStore) -> None:
    ids = [_submit(store) for _ in range(3)]
    assert [store.queue_position(_job(store, i)) for i in ids] == [0, 1, 2]
    lease = store.claim("w1")
    assert lease is not None and lease.request_id == ids[0]
    assert lease.job.status is Status.IN_PROGRESS and lease.job.attempts == 1
    assert store.queue_position(lease.job) is None
    assert [store.queue_position(_job(store, i)) for i in ids[1:]] == [0, 1]


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
            assert store.complete(lease, _result("ok"))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)
    assert all(_job(store, i).status is Status.COMPLETED for i in ids)


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
    assert not store.complete(old, _result("old"))
    assert not store.fail(old, "x", "y")
    assert not store.finish_cancelled(old)
    assert not store.release(old)
    assert store.report_step(new, 3, 10, "rendering") is StepAck.CONTINUE
    assert store.complete(new, _result("new"))
    job = store.get(request_id)
    assert job is not None and job.status is Status.COMPLETED and job.result == _result("new")


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
    assert _job(store, request_id).status is Status.CANCELLED


def test_cancel_of_finished_request_changes_nothing(store: JobStore) -> None:
    request_id = _submit(store)
    lease = store.claim("w1")
    assert lease is not None and store.complete(lease, _result("r"))
    outcome = store.cancel(request_id, "alice")
    assert outcome is not None and outcome[0] is CancelOutcome.ALREADY_FINISHED
    assert _job(store, request_id).status is Status.COMPLETED


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
    assert _job(store, request_id).status is Status.IN_QUEUE


def test_cancel_racing_claim_ends_in_exactly_one_consistent_state(store: JobStore) -> None:
    for _ in range(20):
        request_id = _submit(store)
        leases: list[Lease | None] = []
        cancels: list[tuple[CancelOutcome, Job] | None] = []
        barrier = threading.Barrier(2)

        def claimer() -> None:
            barrier.wait()
            leases.append(store.claim("w1"))

        def canceller() -> None:
            barrier.wait()
            cancels.append(store.cancel(request_id, "alice"))

        threads = [threading.Thread(target=claimer), threading.Thread(target=canceller)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        [lease], [cancelled] = leases, cancels
        assert cancelled is not None
        if cancelled[0] is CancelOutcome.CANCELLED:
            assert lease is None  # cancelled while queued: it never ran
        else:
            assert cancelled[0] is CancelOutcome.REQUESTED and lease is not None
            assert store.report_step(lease, 1, 2, "x") is StepAck.CANCEL
            assert store.finish_cancelled(lease)
        assert _job(store, request_id).status is Status.CANCELLED


def test_a_worker_only_claims_the_models_it_serves(store: JobStore) -> None:
    other = store.submit(owner="o", model="someone/else", input={}, image_key="inputs/a").id
    mine = store.submit(owner="o", model=MODEL, input={}, image_key="inputs/b").id
    lease = store.claim("w", models=[MODEL])
    assert lease is not None and lease.request_id == mine
    assert store.claim("w", models=[MODEL]) is None
    job = store.get(other)
    assert job is not None and job.status is Status.IN_QUEUE


def test_every_status_change_goes_through_the_one_transition(db: Engine) -> None:
    """Each change is seen, in order, by the transition's listeners: the claim (SKIP LOCKED on
    PostgreSQL), finishing, cancelling, giving back and requeueing; none bypasses it."""
    seen: list[StatusChange] = []

    def record(conn: Connection, change: StatusChange) -> None:
        # Inside the change's transaction: the row already has its new status.
        status = conn.execute(
            select(requests.c.status).where(requests.c.id == change.request_id)
        ).scalar_one()
        assert status == change.target
        seen.append(change)

    store = JobStore(db, lease_seconds=30, max_attempts=5, listeners=[record])
    done, failed, queued_cancel, running_cancel, back = (_submit(store) for _ in range(5))
    for rid in (done, failed):
        lease = store.claim("w")
        assert lease is not None and lease.request_id == rid
        if rid == done:
            assert store.complete(lease, _result(rid))
        else:
            assert store.fail(lease, "engine_error", "boom")
    assert store.cancel(queued_cancel, "alice") is not None
    lease = store.claim("w")
    assert lease is not None and lease.request_id == running_cancel
    store.cancel(running_cancel, "alice")
    assert store.finish_cancelled(lease)
    lease = store.claim("w")
    assert lease is not None and lease.request_id == back and store.release(lease)
    assert store.claim("w") is not None
    _expire(db, back)
    assert store.requeue_expired() == [(back, Status.IN_QUEUE)]

    q, p = Status.IN_QUEUE, Status.IN_PROGRESS
    expected = {
        done: [(q, p), (p, Status.COMPLETED)],
        failed: [(q, p), (p, Status.FAILED)],
        queued_cancel: [(q, Status.CANCELLED)],
        running_cancel: [(q, p), (p, Status.CANCELLED)],
        back: [(q, p), (p, q), (q, p), (p, q)],
    }
    for rid, steps in expected.items():
        assert [(c.source, c.target) for c in seen if c.request_id == rid] == steps
        job = store.get(rid)
        assert job is not None and job.status is steps[-1][1]


def test_a_failing_listener_undoes_the_status_change(db: Engine) -> None:
    """What a listener writes shares the change's transaction, both ways."""

    def refuse(conn: Connection, change: StatusChange) -> None:
        raise RuntimeError(f"refused {change.target}")

    store = JobStore(db, lease_seconds=30, max_attempts=2, listeners=[refuse])
    request_id = _submit(store)
    with pytest.raises(RuntimeError, match="refused in_progress"):
        store.claim("w")
    job = store.get(request_id)
    assert job is not None and job.status is Status.IN_QUEUE and job.lease_token is None


def test_postgres_claim_skips_a_request_another_transaction_has_locked(
    pg_schema_url: str,
) -> None:
    url = make_url(pg_schema_url)
    # A claim that waited for the lock instead of skipping the row fails after 3 s, not hangs.
    options = f"{url.query['options']} -clock_timeout=3000"
    engine = create_db_engine(url.update_query_dict({"options": options}).render_as_string(False))
    migrate(engine)
    store = JobStore(engine, lease_seconds=30, max_attempts=2)
    first, second = _submit(store), _submit(store)
    try:
        with engine.connect() as other:
            other.execute(select(requests.c.id).where(requests.c.id == first).with_for_update())
            lease = store.claim("w")
            assert lease is not None and lease.request_id == second
            other.rollback()
        lease = store.claim("w")
        assert lease is not None and lease.request_id == first
    finally:
        engine.dispose()


def test_a_completed_request_reads_back_the_result_it_stored(store: JobStore) -> None:
    request_id = _submit(store)
    lease = store.claim("w")
    assert lease is not None
    result = VideoResult(
        video_key="outputs/x/video.mp4",
        poster_key="outputs/x/poster.jpg",
        metadata={"engine": "preview", "size": (16, 9), "loras": [{"path": "a", "scale": 1.0}]},
    )
    assert store.complete(lease, result)
    job = store.get(request_id)
    assert job is not None and job.result == result
    assert job.result.metadata["size"] == [16, 9]  # stored as JSON stores it


def test_a_malformed_stored_result_is_named_when_read(db: Engine, store: JobStore) -> None:
    request_id = _submit(store)
    with db.begin() as conn:
        conn.execute(
            update(requests).where(requests.c.id == request_id).values(result={"video": "x"})
        )
    with pytest.raises(MalformedResult, match=f"request {request_id}: the stored result"):
        store.get(request_id)
