"""The request table is the queue: every status change of a request happens here.

A request is born ``in_queue`` (:meth:`JobStore.submit`'s INSERT); every change after that is
one UPDATE, written by :meth:`JobStore._transition` alone, guarded by the state the request may
come from (see :mod:`framecast.states`) and, for a worker's writes, by its lease token; the row
it returns says whether it took effect. A worker whose lease was taken away therefore cannot
complete, fail or overwrite a request: its token no longer matches.
Whatever must happen together with a status change (a NOTIFY, /metrics' totals in
:mod:`framecast.queue.request_totals`, a row in another table) runs in that UPDATE's transaction: see
:data:`StatusListener`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping

from framecast import states
from framecast.db import requests, utcnow
from framecast.db.backend import notify, skip_locked
from framecast.queue import request_totals
from framecast.queue.results import VideoResult
from framecast.states import Status


@dataclass(frozen=True)
class Job:
    seq: int
    id: str
    owner: str
    model: str
    status: Status
    input: dict[str, Any]
    image_key: str
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempts: int
    worker_id: str | None
    lease_token: str | None
    lease_expires_at: dt.datetime | None
    cancel_requested_at: dt.datetime | None
    phase: str | None
    step: int | None
    total_steps: int | None
    progress: float | None
    error_code: str | None
    error_message: str | None
    result: VideoResult | None
    data_removed_at: dt.datetime | None
    start_deadline: dt.datetime | None
    """Still queued at this time: it ends cancelled with outcome ``expired``, never run."""
    deleted_at: dt.datetime | None

    @property
    def expired(self) -> bool:
        """Cancelled because it was still queued at its start deadline."""
        return self.status is Status.CANCELLED and self.error_code == EXPIRED

    @classmethod
    def from_row(cls, row: RowMapping) -> Job:
        values = dict(row)
        values["status"] = Status(values["status"])
        if values["result"] is not None:
            values["result"] = VideoResult.from_json(values["result"], request_id=values["id"])
        return cls(**values)


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one request. Every write the worker makes presents the token."""

    job: Job
    token: str

    @property
    def request_id(self) -> str:
        return self.job.id


class StepAck(Enum):
    CONTINUE = "continue"
    CANCEL = "cancel"
    LOST = "lost"


class CancelOutcome(Enum):
    CANCELLED = "cancelled"
    """It was queued and now never runs."""
    REQUESTED = "requested"
    """It is running; the worker stops at its next step boundary."""
    ALREADY_FINISHED = "already_finished"


@dataclass(frozen=True)
class StatusChange:
    """One status change that took effect, as :data:`StatusListener` sees it."""

    request_id: str
    source: Status
    target: Status
    at: dt.datetime


StatusListener = Callable[[Connection, StatusChange], None]
"""Called inside the transaction of every status change, after its UPDATE took effect: what it
writes on the connection commits with the change, and an exception rolls the change back."""


EXPIRED = "expired"
"""The ``error_code`` of a request cancelled because it was still queued at its start deadline
(its outcome, as status, webhooks and /metrics' totals show it)."""


QUEUE_CHANNEL = "framecast_queue"
"""PostgreSQL NOTIFY channel: a request became claimable (submitted, or back in the queue)."""


class JobStore:
    def __init__(
        self,
        engine: Engine,
        *,
        lease_seconds: float,
        max_attempts: int,
        listeners: Sequence[StatusListener] = (),
    ) -> None:
        self.engine = engine
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.listeners = tuple(listeners)

    # -- the API's side ---------------------------------------------------------------------

    def submit(
        self,
        *,
        owner: str,
        model: str,
        input: Mapping[str, Any],
        image_key: str,
        request_id: str | None = None,
        also: Callable[[Connection, Job], None] | None = None,
        start_timeout: dt.timedelta | None = None,
    ) -> Job:
        """Queue a request. ``also`` runs in the INSERT's transaction with the new request
        (e.g. recording its webhook): both commit, or neither. ``start_timeout``: still
        queued this long after now, it is cancelled as expired instead of run."""
        now = utcnow()
        request_id = request_id or str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                insert(requests).values(
                    id=request_id,
                    owner=owner,
                    model=model,
                    status=Status.IN_QUEUE,
                    input=dict(input),
                    image_key=image_key,
                    created_at=now,
                    updated_at=now,
                    attempts=0,
                    start_deadline=now + start_timeout if start_timeout is not None else None,
                )
            )
            self._notify(conn)
            job = self._load(conn, request_id)
            assert job is not None
            if also is not None:
                also(conn, job)
        return job

    def get(self, request_id: str, owner: str | None = None) -> Job | None:
        with self.engine.connect() as conn:
            job = self._load(conn, request_id, owner)
        now = utcnow()
        if job is not None and job.status is Status.IN_QUEUE and _overdue(job, now):
            # Read past its deadline: expired now, not at the next sweep, so that a status
            # read never shows a request queued that can no longer start.
            self._expire(job.id, job.start_deadline, now)
            with self.engine.connect() as conn:
                job = self._load(conn, request_id, owner)
        return job

    def queue_position(self, job: Job) -> int | None:
        """0-based place in the queue: how many queued requests run before this one."""
        if job.status is not Status.IN_QUEUE:
            return None
        with self.engine.connect() as conn:
            ahead = conn.execute(
                select(func.count())
                .select_from(requests)
                .where(
                    requests.c.status == Status.IN_QUEUE,
                    requests.c.seq < job.seq,
                    requests.c.model == job.model,
                )
            ).scalar_one()
        return int(ahead)

    def cancel(self, request_id: str, owner: str) -> tuple[CancelOutcome, Job] | None:
        """Cancel a request: at once if queued, at the next step boundary if running."""
        for _ in range(5):  # each pass follows one concurrent change (e.g. a claim)
            job = self.get(request_id, owner)
            if job is None:
                return None
            now = utcnow()
            if job.status is Status.IN_QUEUE:
                cancelled = self._transition(
                    Status.IN_QUEUE, Status.CANCELLED, _id(job.id), finished_at=now, phase=None
                )
                if cancelled is not None:
                    return CancelOutcome.CANCELLED, self._must_get(job.id)
            elif job.status is Status.IN_PROGRESS:
                with self.engine.begin() as conn:
                    changed = conn.execute(
                        update(requests)
                        .where(requests.c.id == job.id, requests.c.status == Status.IN_PROGRESS)
                        .values(
                            cancel_requested_at=func.coalesce(requests.c.cancel_requested_at, now),
                            updated_at=now,
                        )
                    ).rowcount
                if changed:
                    return CancelOutcome.REQUESTED, self._must_get(job.id)
            else:
                return CancelOutcome.ALREADY_FINISHED, job
        raise RuntimeError(f"request {request_id} kept changing while being cancelled")

    # -- the worker's side ------------------------------------------------------------------

    def claim(self, worker_id: str, models: list[str] | None = None) -> Lease | None:
        """Take the oldest queued request (of ``models``, if given), or None when there is none.

        One statement picks the row and takes it, so no two workers take the same request:
        PostgreSQL workers each skip the rows the others are locking (none waits on another),
        and SQLite runs the statement under its single write lock.
        """
        now = utcnow()
        oldest = (
            select(requests.c.seq)
            # Past its deadline it is never started, even before a sweep has cancelled it.
            .where(requests.c.status == Status.IN_QUEUE, _startable(now))
            .order_by(requests.c.seq)
            .limit(1)
        )
        if models is not None:
            oldest = oldest.where(requests.c.model.in_(models))
        oldest = skip_locked(self.engine, oldest)
        token = secrets.token_hex(16)
        taken = self._transition(
            Status.IN_QUEUE,
            Status.IN_PROGRESS,
            requests.c.seq == oldest.scalar_subquery(),
            **self._claim_values(worker_id, token, now),
        )
        return Lease(self._must_get(taken), token) if taken is not None else None

    def _claim_values(self, worker_id: str, token: str, now: dt.datetime) -> dict[str, Any]:
        return {
            "worker_id": worker_id,
            "lease_token": token,
            "lease_expires_at": now + self.lease,
            "started_at": now,
            "attempts": requests.c.attempts + 1,
            "phase": "starting",
            "step": 0,
            "total_steps": None,
            "progress": 0.0,
        }

    def renew(self, lease: Lease) -> bool:
        now = utcnow()
        return self._leased_write(lease, lease_expires_at=now + self.lease)

    def report_step(
        self, lease: Lease, step: int, total: int, phase: str, progress: float | None = None
    ) -> StepAck:
        """Record progress; tell the worker whether to go on, stop for a cancel, or give up.

        ``progress`` is the whole request's fraction done; default ``step / total``.
        """
        if progress is None:
            progress = step / total if total > 0 else 0.0
        progress = min(1.0, max(0.0, progress))
        if not self._leased_write(
            lease, step=step, total_steps=total, phase=phase, progress=progress
        ):
            return StepAck.LOST
        return self.check(lease)

    def check(self, lease: Lease) -> StepAck:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    requests.c.cancel_requested_at, requests.c.lease_token, requests.c.status
                ).where(requests.c.id == lease.request_id)
            ).one_or_none()
        if row is None or row.lease_token != lease.token or row.status != Status.IN_PROGRESS:
            return StepAck.LOST
        return StepAck.CANCEL if row.cancel_requested_at is not None else StepAck.CONTINUE

    def complete(self, lease: Lease, result: VideoResult) -> bool:
        return self._finish(lease, Status.COMPLETED, result=result.to_json(), progress=1.0)

    def fail(self, lease: Lease, code: str, message: str) -> bool:
        return self._finish(lease, Status.FAILED, error_code=code, error_message=message)

    def finish_cancelled(self, lease: Lease) -> bool:
        return self._finish(lease, Status.CANCELLED)

    def release(self, lease: Lease) -> bool:
        """Give a request back to the queue (worker shutting down): the attempt does not count."""
        taken_back = self._transition(
            Status.IN_PROGRESS,
            Status.IN_QUEUE,
            _id(lease.request_id),
            guards=[requests.c.lease_token == lease.token],
            attempts=requests.c.attempts - 1,
            **_cleared_lease(),
        )
        return taken_back is not None

    def requeue_expired(self) -> list[tuple[str, Status]]:
        """Return requests whose worker stopped renewing its lease to the queue.

        After ``max_attempts`` claims the request fails instead, and one whose cancel was
        asked for is cancelled. The guard on the old token and expiry makes this safe to run
        from every worker at once, and against a worker renewing at the same moment.
        """
        now = utcnow()
        with self.engine.connect() as conn:
            expired = conn.execute(
                select(
                    requests.c.id,
                    requests.c.lease_token,
                    requests.c.attempts,
                    requests.c.cancel_requested_at,
                ).where(requests.c.status == Status.IN_PROGRESS, requests.c.lease_expires_at < now)
            ).all()
        moved: list[tuple[str, Status]] = []
        for row in expired:
            values: dict[str, Any]
            guards = [requests.c.lease_token == row.lease_token, requests.c.lease_expires_at < now]
            if row.cancel_requested_at is not None:
                target, values = Status.CANCELLED, {"finished_at": now}
            elif row.attempts >= self.max_attempts:
                target, values = (
                    Status.FAILED,
                    {
                        "finished_at": now,
                        "error_code": "worker_lost",
                        "error_message": (
                            f"the worker running this request stopped responding "
                            f"{row.attempts} times; it will not be retried"
                        ),
                    },
                )
            else:
                target, values = Status.IN_QUEUE, {"started_at": None}
            changed = self._transition(
                Status.IN_PROGRESS, target, _id(row.id), guards=guards, **_cleared_lease(), **values
            )
            if changed is not None:
                moved.append((row.id, target))
        return moved

    def expire_overdue(self, limit: int = 500) -> list[str]:
        """Cancel, as expired, the queued requests whose start deadline has passed; their ids.

        Safe from every API node and worker at once: each is one guarded transition."""
        now = utcnow()
        with self.engine.connect() as conn:
            due = conn.execute(
                select(requests.c.id, requests.c.start_deadline)
                .where(requests.c.status == Status.IN_QUEUE, ~_startable(now))
                .order_by(requests.c.seq)
                .limit(limit)
            ).all()
        return [
            request_id
            for request_id, deadline in due
            if self._expire(request_id, deadline, now) is not None
        ]

    def _expire(
        self, request_id: str, deadline: dt.datetime | None, now: dt.datetime
    ) -> str | None:
        late = (now - deadline).total_seconds() if deadline is not None else 0.0
        return self._transition(
            Status.IN_QUEUE,
            Status.CANCELLED,
            _id(request_id),
            guards=[~_startable(now)],
            finished_at=now,
            phase=None,
            error_code=EXPIRED,
            error_message="it did not start before its deadline (X-Fal-Request-Timeout) and "
            f"was cancelled {late:.1f} s after it, without running",
        )

    def delete(self, request_id: str, owner: str) -> bool:
        """Hide a request from its owner for good (``DELETE /v1/videos/{id}``); False if it
        was not theirs or already deleted. Its status stays as it is: cancel it first."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(requests)
                .where(_id(request_id), requests.c.owner == owner, requests.c.deleted_at.is_(None))
                .values(deleted_at=utcnow(), updated_at=utcnow())
            ).rowcount
        return bool(changed == 1)

    # -- retention --------------------------------------------------------------------------

    def finished_before(self, cutoff: dt.datetime, limit: int = 100) -> list[Job]:
        """Finished requests older than ``cutoff`` whose files are still kept, oldest first."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(requests)
                    .where(
                        requests.c.status.in_([s.value for s in states.TERMINAL]),
                        requests.c.finished_at < cutoff,
                        requests.c.data_removed_at.is_(None),
                    )
                    .order_by(requests.c.finished_at)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [Job.from_row(row) for row in rows]

    def mark_data_removed(self, request_id: str) -> bool:
        """Record that a finished request's files are gone (once; the status stays)."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(requests)
                .where(
                    requests.c.id == request_id,
                    requests.c.status.in_([s.value for s in states.TERMINAL]),
                    requests.c.data_removed_at.is_(None),
                )
                .values(data_removed_at=utcnow(), updated_at=utcnow())
            ).rowcount
        return bool(changed == 1)

    # -- the one place that writes status ---------------------------------------------------

    def _transition(
        self,
        source: Status,
        target: Status,
        which: ColumnElement[bool],
        *,
        guards: Sequence[ColumnElement[bool]] = (),
        **values: Any,
    ) -> str | None:
        """Move the request ``which`` selects from ``source`` to ``target``, setting ``values``.

        Returns its id, or None when no request matched: it was no longer in ``source``, or a
        guard (the lease token, the expiry) no longer held.
        """
        states.check(source, target)
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(
                update(requests)
                .where(which, requests.c.status == source, *guards)
                .values(status=target, updated_at=now, **values)
                .returning(*request_totals.RETURNED)
            ).one_or_none()
            if row is None:
                return None
            request_id = row.id
            # /metrics' totals move with the status, in its transaction: exact on every node.
            request_totals.record(conn, source, target, row)
            if target is Status.IN_QUEUE:
                self._notify(conn)
            change = StatusChange(request_id, source, target, now)
            for listener in self.listeners:
                listener(conn, change)
        return str(request_id)

    def _notify(self, conn: Connection) -> None:
        # Delivered at commit, so a woken worker finds the row; SQLite workers just poll.
        notify(conn, QUEUE_CHANNEL)

    def _finish(self, lease: Lease, target: Status, **values: Any) -> bool:
        finished = self._transition(
            Status.IN_PROGRESS,
            target,
            _id(lease.request_id),
            guards=[requests.c.lease_token == lease.token],
            finished_at=utcnow(),
            lease_expires_at=None,
            **values,
        )
        return finished is not None

    def _leased_write(self, lease: Lease, **values: Any) -> bool:
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(requests)
                .where(
                    requests.c.id == lease.request_id,
                    requests.c.status == Status.IN_PROGRESS,
                    requests.c.lease_token == lease.token,
                )
                .values(updated_at=utcnow(), **values)
            ).rowcount
        return bool(changed == 1)

    def _load(self, conn: Connection, request_id: str, owner: str | None = None) -> Job | None:
        query = select(requests).where(requests.c.id == request_id)
        if owner is not None:
            # What its owner deleted is gone for them; workers and sweeps still see it.
            query = query.where(requests.c.owner == owner, requests.c.deleted_at.is_(None))
        row = conn.execute(query).mappings().one_or_none()
        return Job.from_row(row) if row is not None else None

    def _must_get(self, request_id: str) -> Job:
        job = self.get(request_id)
        if job is None:
            raise LookupError(request_id)
        return job


def _id(request_id: str) -> ColumnElement[bool]:
    return requests.c.id == request_id


def _overdue(job: Job, now: dt.datetime) -> bool:
    return job.start_deadline is not None and job.start_deadline <= now


def _startable(now: dt.datetime) -> ColumnElement[bool]:
    """A queued request that may still start: no deadline, or one not yet reached."""
    return or_(requests.c.start_deadline.is_(None), requests.c.start_deadline > now)


def _cleared_lease() -> dict[str, Any]:
    return {
        "worker_id": None,
        "lease_token": None,
        "lease_expires_at": None,
        "phase": None,
        "step": None,
        "total_steps": None,
        "progress": None,
    }
