"""The outbox's rows as a queue of deliveries: claimed under a lease, retried with back-off.

A claim is one UPDATE that picks the due rows and takes them, so two dispatchers (two API
nodes, or ``framecast webhooks dispatch`` beside ``serve``) never send the same attempt at
once: on PostgreSQL each skips the rows another is locking (``FOR UPDATE SKIP LOCKED``), and
SQLite runs the statement under its single write lock. A dispatcher that dies mid-attempt
leaves its lease to expire; the row is then due again (at least once, never lost).

The retry window ends every delivery: an attempt that fails after it is the last, and so is
one that never recorded an outcome (its dispatcher died, or the attempt kills it each time):
once the window is over and its lease has run out, a claim marks it failed (claims look for
such deliveries once a minute).
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.engine import Connection

from framecast.db import utcnow, webhook_deliveries
from framecast.db.backend import skip_locked, write_turns

_d = webhook_deliveries.c


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """Gave up after the retry window; kept for inspection (`framecast webhooks list`)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: ``base`` after the first failure, doubling up to ``cap``, with up
    to 10% jitter so deliveries that failed together do not all come back together; no new
    attempt starts later than ``give_up_after`` from the status change."""

    base: dt.timedelta
    cap: dt.timedelta
    give_up_after: dt.timedelta

    def delay(self, failures: int) -> dt.timedelta:
        exact: dt.timedelta = min(self.base * (2 ** max(0, failures - 1)), self.cap)
        return exact * (1 + random.random() / 10)  # spreading load, not security


@dataclass(frozen=True)
class Delivery:
    id: str
    request_id: str
    owner: str
    url: str
    event: str
    payload: dict[str, Any]
    state: DeliveryState
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    finished_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None
    lease_token: str | None


_COLUMNS = (
    _d.id,
    _d.request_id,
    _d.owner,
    _d.url,
    _d.event,
    _d.payload,
    _d.state,
    _d.attempts,
    _d.created_at,
    _d.next_attempt_at,
    _d.finished_at,
    _d.last_status_code,
    _d.last_error,
    _d.lease_token,
)


def _delivery(row: Any) -> Delivery:
    values = dict(row._mapping)
    values["state"] = DeliveryState(values["state"])
    return Delivery(**values)


BROKE_OFF = (
    "an attempt recorded no outcome (its dispatcher stopped during it) and the retry window is over"
)


SWEEP_EVERY = dt.timedelta(minutes=1)
"""How often claims look for deliveries to end (see :meth:`DeliveryStore._end_broken_off`)."""


class DeliveryStore:
    def __init__(
        self,
        engine: Engine,
        *,
        lease: dt.timedelta,
        retry: RetryPolicy,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        """``clock``: the time leases, back-off and the retry window are reckoned in (tests
        move it on rather than wait)."""
        self.engine = engine
        self.lease = lease
        self.retry = retry
        self.clock = clock
        self._next_sweep = dt.datetime.min.replace(tzinfo=dt.UTC)
        # A dispatcher's own attempts record their outcomes from many threads at once: on
        # SQLite they take turns here rather than sleep on the file's lock.
        self._write_lock = write_turns(engine)

    def claim(self, limit: int) -> list[Delivery]:
        """Take up to ``limit`` due deliveries (oldest due first) for one attempt each; first
        mark failed those past the retry window whose last claim ran out without an outcome."""
        now = self.clock()
        due = (
            select(_d.seq)
            .where(
                _d.state == DeliveryState.PENDING,
                _d.next_attempt_at <= now,
                or_(_d.lease_expires_at.is_(None), _d.lease_expires_at < now),
            )
            .order_by(_d.next_attempt_at)
            .limit(limit)
        )
        due = skip_locked(self.engine, due)
        token = secrets.token_hex(16)
        with self._write_lock, self.engine.begin() as conn:
            if now >= self._next_sweep:
                # Not at every claim: with a large backlog (a receiver down for hours) the
                # scan of the pending rows would slow each claim; a day's window can end a
                # minute late.
                self._next_sweep = now + SWEEP_EVERY
                self._end_broken_off(conn, now)
            rows = conn.execute(
                update(webhook_deliveries)
                .where(_d.seq.in_(due.scalar_subquery()))
                .values(lease_token=token, lease_expires_at=now + self.lease)
                .returning(*_COLUMNS)
            ).all()
        return sorted((_delivery(r) for r in rows), key=lambda d: d.next_attempt_at)

    def _end_broken_off(self, conn: Connection, now: dt.datetime) -> None:
        """Fail the pending deliveries past the window whose lease ran out: each was claimed,
        and its attempt never came back. One that was never claimed after the window (a
        dispatcher down all that time) still gets its one last attempt."""
        stale = select(_d.seq).where(
            _d.state == DeliveryState.PENDING,
            _d.created_at < now - self.retry.give_up_after,
            _d.lease_expires_at < now,
        )
        stale = skip_locked(self.engine, stale)  # as claim: no waiting, no deadlock
        conn.execute(
            update(webhook_deliveries)
            .where(_d.seq.in_(stale.scalar_subquery()))
            .values(
                state=DeliveryState.FAILED,
                finished_at=now,
                attempts=_d.attempts + 1,
                lease_token=None,
                lease_expires_at=None,
                # The last recorded reason, if any, then why it ended.
                last_error=func.coalesce(_d.last_error + "; then ", "") + BROKE_OFF,
            )
        )

    def delivered(self, delivery: Delivery, status_code: int) -> bool:
        return self._record(
            delivery,
            state=DeliveryState.DELIVERED,
            finished_at=self.clock(),
            last_status_code=status_code,
            last_error=None,
        )

    def attempt_failed(self, delivery: Delivery, status_code: int | None, error: str) -> bool:
        """Schedule the next attempt, or give up once the next would start after the window."""
        now = self.clock()
        failures = delivery.attempts + 1
        retry_at = now + self.retry.delay(failures)
        if retry_at > delivery.created_at + self.retry.give_up_after:
            return self._record(
                delivery,
                state=DeliveryState.FAILED,
                finished_at=now,
                last_status_code=status_code,
                last_error=error,
            )
        return self._record(
            delivery, next_attempt_at=retry_at, last_status_code=status_code, last_error=error
        )

    def give_up(self, delivery: Delivery, error: str) -> bool:
        """Fail it now: no attempt could ever succeed (e.g. its key has no secret)."""
        return self._record(
            delivery, state=DeliveryState.FAILED, finished_at=self.clock(), last_error=error
        )

    def _record(self, delivery: Delivery, **values: Any) -> bool:
        """Write an attempt's outcome, only while this dispatcher's lease holds (a lease that
        expired mid-attempt may already be another dispatcher's)."""
        with self._write_lock, self.engine.begin() as conn:
            changed = conn.execute(
                update(webhook_deliveries)
                .where(
                    _d.id == delivery.id,
                    _d.lease_token == delivery.lease_token,
                    _d.state == DeliveryState.PENDING,
                )
                .values(attempts=_d.attempts + 1, lease_token=None, lease_expires_at=None, **values)
            ).rowcount
        return bool(changed == 1)

    # -- inspection -----------------------------------------------------------------------------

    def recent(
        self,
        *,
        request_id: str | None = None,
        state: DeliveryState | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Newest first."""
        query = select(*_COLUMNS).order_by(_d.seq.desc()).limit(limit)
        if request_id is not None:
            query = query.where(_d.request_id == request_id)
        if state is not None:
            query = query.where(_d.state == state)
        with self.engine.connect() as conn:
            return [_delivery(r) for r in conn.execute(query).all()]

    def pending_count(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(_d.state == DeliveryState.PENDING)
                ).scalar_one()
            )
