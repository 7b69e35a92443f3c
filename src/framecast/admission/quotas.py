"""Per-key limits: how many requests a key may have queued or running, and how fast it may
submit. Both are counted in the database, so they hold however many API nodes share it.

The rate limit is a fixed window per owner: one row, bumped by a single upsert, whose result is
the count so far in the current window. It counts requests made, not submits tried: the count
is bumped in the transaction that inserts the request (:meth:`QuotaStore.insert_guard`), so a
submit refused for its input (a 422), by a limit or by its Idempotency-Key uses none of it;
before the image is fetched, a submit is only checked against the count so far. The
active-request limit is checked in that same transaction, after locking the owner's row, so two
concurrent submits cannot both take the last slot (nor the last submit of the window).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, case, func, select, update
from sqlalchemy.engine import Connection

from framecast.contract.errors import ErrorCode
from framecast.db import api_keys, requests, submit_counters
from framecast.db.backend import upsert
from framecast.errors import FramecastError
from framecast.rates import UNLIMITED, Rate, parse_rate
from framecast.states import Status

ACTIVE_RETRY_AFTER_S = 10
"""Retry-After of a submit refused for too many active requests: nobody knows when one ends,
so a short wait that does not hammer the server."""

_ACTIVE = (Status.IN_QUEUE.value, Status.IN_PROGRESS.value)


class QuotaExceeded(FramecastError):
    """A 429 with Retry-After; ``code`` says which limit."""

    status = 429

    def __init__(self, message: str, *, code: ErrorCode, retry_after: int, **details: Any) -> None:
        super().__init__(message, code=code, retry_after=retry_after, **details)
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True)
class Limits:
    """What applies to one owner; None: no limit."""

    max_active: int | None
    rate: Rate | None


@dataclass(frozen=True)
class KeyLimits:
    """A created key's own limits as stored; None: the server's default applies."""

    max_active: int | None
    """0: no limit for this key."""
    submit_rate: str | None
    """``unlimited``: no limit for this key."""

    def describe(self) -> str:
        active = {None: "default", 0: "unlimited"}.get(self.max_active, str(self.max_active))
        return f"max-active {active}, rate {self.submit_rate or 'default'}"


def limit_value(text: str) -> int | None:
    """A CLI ``--max-active`` value: a number, ``unlimited`` (stored 0) or ``default`` (None)."""
    word = text.strip().lower()
    if word == "default":
        return None
    if word == UNLIMITED:
        return 0
    if word.isdigit() and int(word) >= 1:
        return int(word)
    raise ValueError(f"'{text}' is not a limit: give a number of at least 1, unlimited or default")


def rate_value(text: str) -> str | None:
    """A CLI ``--rate`` value: a rate (``10/minute``), ``unlimited`` or ``default`` (None)."""
    word = text.strip().lower()
    if word == "default":
        return None
    if word == UNLIMITED:
        return UNLIMITED
    return str(parse_rate(word))


class QuotaStore:
    def __init__(
        self, engine: Engine, *, default_max_active: int | None, default_rate: str | None
    ) -> None:
        self.engine = engine
        self.default_max_active = default_max_active
        self.default_rate = parse_rate(default_rate) if default_rate else None

    # -- what applies ---------------------------------------------------------------------

    def key_limits(self, key_id: str) -> KeyLimits | None:
        """A created key's own limits; None for an unknown key (or a FRAMECAST_API_KEYS one)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_keys.c.max_active, api_keys.c.submit_rate).where(api_keys.c.id == key_id)
            ).one_or_none()
        return KeyLimits(row.max_active, row.submit_rate) if row is not None else None

    def set_key_limits(self, key_id: str, **changes: int | str | None) -> KeyLimits | None:
        """Change ``max_active`` and/or ``submit_rate`` of a created key (values as
        :func:`limit_value` and :func:`rate_value` give them); None for an unknown key."""
        unknown = set(changes) - {"max_active", "submit_rate"}
        if unknown:
            raise TypeError(f"no such limit: {', '.join(sorted(unknown))}")
        if changes:
            with self.engine.begin() as conn:
                conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**changes))
        return self.key_limits(key_id)

    def limits_for(self, owner: str) -> Limits:
        own = self.key_limits(owner) if owner.startswith("key_") else None
        max_active = self.default_max_active
        rate = self.default_rate
        if own is not None and own.max_active is not None:
            max_active = own.max_active or None
        if own is not None and own.submit_rate is not None:
            rate = None if own.submit_rate == UNLIMITED else parse_rate(own.submit_rate)
        return Limits(max_active, rate)

    # -- the checks -----------------------------------------------------------------------

    def check_rate(self, owner: str, rate: Rate, now: float | None = None) -> None:
        """:class:`QuotaExceeded` when the owner's current window is already full; counts
        nothing (:meth:`count_submit` does, with the INSERT)."""
        now = time.time() if now is None else now
        table = submit_counters
        with self.engine.connect() as conn:
            row = conn.execute(
                select(table.c.window_start, table.c.submits).where(table.c.owner == owner)
            ).one_or_none()
        if row is not None and row.window_start == rate.window_of(now):
            self._check_count(rate, row.submits + 1, now)

    def count_submit(
        self, owner: str, rate: Rate, now: float | None = None, conn: Connection | None = None
    ) -> None:
        """Count one submit in the owner's current window; :class:`QuotaExceeded` when it is
        one too many. A single upsert, so concurrent nodes never lose a count. ``conn``: the
        INSERT's transaction, which the count then joins (and is rolled back with); the
        upsert locks the owner's row until it ends."""
        now = time.time() if now is None else now
        if conn is None:
            with self.engine.begin() as own:
                self.count_submit(owner, rate, now, own)
            return
        window = rate.window_of(now)
        table = submit_counters
        statement = upsert(
            conn,
            table,
            {"owner": owner, "window_start": window, "submits": 1},
            key=[table.c.owner],
            update={
                "submits": case((table.c.window_start == window, table.c.submits + 1), else_=1),
                "window_start": window,
            },
        ).returning(table.c.submits)
        self._check_count(rate, conn.execute(statement).scalar_one(), now)

    def _check_count(self, rate: Rate, submits: int, now: float) -> None:
        """:class:`QuotaExceeded` when ``submits``, counting this one, is over ``rate``."""
        if submits > rate.count:
            retry = rate.retry_after(now)
            raise QuotaExceeded(
                f"this key may submit {rate} (FRAMECAST_SUBMIT_RATE, or the key's own limit "
                f"from `framecast keys set-limits`); try again in {retry} s",
                code=ErrorCode.RATE_LIMITED,
                retry_after=retry,
            )

    def active(self, owner: str, conn: Connection | None = None) -> int:
        """How many of the owner's requests are queued or running."""
        query = (
            select(func.count())
            .select_from(requests)
            .where(requests.c.owner == owner, requests.c.status.in_(_ACTIVE))
        )
        if conn is not None:
            return int(conn.execute(query).scalar_one())
        with self.engine.connect() as own:
            return int(own.execute(query).scalar_one())

    def check_active(self, max_active: int, with_new: int) -> None:
        """:class:`QuotaExceeded` when ``with_new``, the owner's active requests counting the
        new one, is more than ``max_active``."""
        if with_new > max_active:
            raise QuotaExceeded(
                f"this key already has {max_active} request{'s' * (max_active != 1)} queued or "
                "running, its limit (FRAMECAST_MAX_ACTIVE_PER_KEY, or the key's own from "
                "`framecast keys set-limits`); wait for one to finish or cancel one, then "
                "submit again",
                code=ErrorCode.TOO_MANY_ACTIVE_REQUESTS,
                retry_after=ACTIVE_RETRY_AFTER_S,
                max_active=max_active,
            )

    def active_guard(self, owner: str, max_active: int) -> Callable[[Connection, object], None]:
        """For :meth:`framecast.queue.jobs.JobStore.submit`'s ``also``: runs after the new request's
        INSERT, in its transaction, and raises (rolling the INSERT back) when it is one too
        many. Locking the owner's counter row first makes one owner's submits take turns
        here, and each counts the others' committed requests (PostgreSQL's READ COMMITTED
        takes a fresh snapshot per statement; SQLite has one writer at a time anyway)."""

        def guard(conn: Connection, _job: object) -> None:
            table = submit_counters
            conn.execute(
                upsert(
                    conn,
                    table,
                    {"owner": owner, "window_start": 0, "submits": 0},
                    key=[table.c.owner],
                    update={"submits": table.c.submits},
                )
            )
            # After the INSERT: the count includes the new request.
            self.check_active(max_active, self.active(owner, conn))

        return guard

    def insert_guard(self, owner: str, limits: Limits) -> Callable[[Connection, object], None]:
        """For :meth:`framecast.queue.jobs.JobStore.submit`'s ``also``: counts the submit against the
        rate and checks the active-request limit, in the INSERT's transaction (either refusal
        rolls the INSERT back, and the count with it)."""
        check_active = self.active_guard(owner, limits.max_active) if limits.max_active else None

        def guard(conn: Connection, job: object) -> None:
            if limits.rate is not None:
                self.count_submit(owner, limits.rate, conn=conn)
            if check_active is not None:
                check_active(conn, job)

        return guard
