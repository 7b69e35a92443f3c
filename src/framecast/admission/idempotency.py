"""``Idempotency-Key`` on submit: the same key and body within 24 hours make one request.

A submit with a key first claims ``(owner, key)`` with the request id it is about to create
(the table's primary key decides between concurrent submits), then makes the request; a failed
submit releases its claim so the client can retry with the same key. A later submit with the
key finds the claim: the same body answers the claimed request once it exists (a concurrent
one waits for it), a different body is a conflict.

A claim whose request has not appeared after about a submit's own deadline (the image
download's limit and a margin, :func:`submit_deadline`) is taken for abandoned, its API killed
mid-submit, and the next submit with the key takes it over. So that a submit that was only slow
cannot then make a second request, its request is inserted only while the claim is still its
own (:meth:`IdempotencyStore.insert_guard`, in the INSERT's transaction).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import JsonValue
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import Connection

from framecast.contract.errors import ErrorCode
from framecast.db import idempotency_keys, requests, utcnow
from framecast.db.backend import upsert
from framecast.errors import FramecastError, InputError

KEY_TTL = dt.timedelta(hours=24)
"""A key names the same request for this long; after it, the key makes a new request."""

SUBMIT_MARGIN = dt.timedelta(seconds=15)
"""A submit's work after its claim, besides the image download: the checks, decoding the image,
storing it, the INSERT. Seconds, unless the database or the store is struggling."""


def submit_deadline(fetch_timeout_seconds: float) -> dt.timedelta:
    """About the longest a live submit holds its key's claim before its request exists: the
    download's own limit (FRAMECAST_FETCH_TIMEOUT, redirects included) and the margin."""
    return dt.timedelta(seconds=fetch_timeout_seconds) + SUBMIT_MARGIN


ABANDONED_AFTER = submit_deadline(20.0)
"""With the default FRAMECAST_FETCH_TIMEOUT (the API's store is given its own setting's)."""

MAX_KEY_LENGTH = 255


class IdempotencyConflict(FramecastError):
    status = 409


@dataclass(frozen=True)
class Claim:
    request_id: str
    replay: bool
    """True: an earlier submit with this key made ``request_id``; answer it, make nothing."""


def checked_key(header: str) -> str:
    key = header.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InputError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters, e.g. a UUID"
        )
    return key


def body_hash(model: str, body: JsonValue, query: list[tuple[str, str]]) -> str:
    """What "the same body" means: the model, the JSON fields as sent (in any order) and the
    query parameters (a webhook)."""
    canonical = json.dumps(
        {"model": model, "body": body, "query": sorted(query)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, engine: Engine, abandoned_after: dt.timedelta = ABANDONED_AFTER) -> None:
        """``abandoned_after``: a claim with no request this old is taken over
        (:func:`submit_deadline` of the API's settings)."""
        self.engine = engine
        self.abandoned_after = abandoned_after

    def claim(self, owner: str, key: str, digest: str, request_id: str) -> Claim | None:
        """Claim ``key`` for a new request ``request_id``, or find what it already names.

        None: another submit with this key and body is still making its request; ask again
        shortly. :class:`IdempotencyConflict` when the key was used for another body."""
        table = idempotency_keys
        for _ in range(10):  # each pass follows one concurrent change: a release, a takeover
            now = utcnow()
            with self.engine.begin() as conn:
                inserted = conn.execute(
                    upsert(
                        conn,
                        table,
                        {
                            "owner": owner,
                            "key": key,
                            "body_hash": digest,
                            "request_id": request_id,
                            "created_at": now,
                        },
                        key=[table.c.owner, table.c.key],
                    ).returning(table.c.request_id)
                ).scalar_one_or_none()
                if inserted is not None:
                    return Claim(request_id, replay=False)
                row = conn.execute(
                    select(table).where(table.c.owner == owner, table.c.key == key)
                ).one_or_none()
                if row is None:
                    continue  # released in between: claim it
                made = conn.execute(
                    select(requests.c.id).where(
                        requests.c.id == row.request_id, requests.c.owner == owner
                    )
                ).one_or_none()
                expired = row.created_at < now - KEY_TTL
                abandoned = made is None and row.created_at < now - self.abandoned_after
                if expired or abandoned:
                    taken = conn.execute(
                        update(table)
                        .where(
                            table.c.owner == owner,
                            table.c.key == key,
                            table.c.request_id == row.request_id,
                            # Unchanged since read: not made meanwhile (insert_guard's touch).
                            table.c.created_at == row.created_at,
                        )
                        .values(body_hash=digest, request_id=request_id, created_at=now)
                    ).rowcount
                    if taken == 1:
                        return Claim(request_id, replay=False)
                    continue
            if row.body_hash != digest:
                raise IdempotencyConflict(
                    f"Idempotency-Key '{key}' was used within the last 24 hours for a different "
                    f"request ({row.request_id}); send the same body to get that request "
                    "again, or a new key for a new request",
                    code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
                    request_id=row.request_id,
                )
            return Claim(row.request_id, replay=True) if made is not None else None
        raise RuntimeError(f"Idempotency-Key '{key}' kept changing while being claimed")

    def insert_guard(
        self, owner: str, key: str, request_id: str
    ) -> Callable[[Connection, object], None]:
        """For :meth:`framecast.queue.jobs.JobStore.submit`'s ``also``: in the INSERT's transaction,
        check that the key's claim still names ``request_id``, and touch it (its 24 hours
        count from here), which a takeover racing with this commit then sees. A submit that
        outlived :attr:`abandoned_after` and was taken over makes nothing: the submit that took
        it over makes the key's request, once."""

        def guard(conn: Connection, _job: object) -> None:
            table = idempotency_keys
            still_ours = conn.execute(
                update(table)
                .where(table.c.owner == owner, table.c.key == key, table.c.request_id == request_id)
                .values(created_at=utcnow())
            ).rowcount
            if still_ours != 1:
                raise IdempotencyConflict(
                    f"this submit took longer than {self.abandoned_after.total_seconds():g} s, "
                    f"and a later submit with Idempotency-Key '{key}' took the key over; that "
                    "submit makes the request: send the same key and body again to get it",
                    code=ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS,
                )

        return guard

    def release(self, owner: str, key: str, request_id: str) -> None:
        """Give up a claim whose submit failed, so the same key can be tried again."""
        table = idempotency_keys
        with self.engine.begin() as conn:
            conn.execute(
                delete(table).where(
                    table.c.owner == owner, table.c.key == key, table.c.request_id == request_id
                )
            )

    def sweep_expired(self, now: dt.datetime | None = None) -> int:
        """Delete the keys older than KEY_TTL (past it a key makes a new request anyway, so
        its row only takes room); how many. Idle workers call it with the retention sweep."""
        cutoff = (now or utcnow()) - KEY_TTL
        with self.engine.begin() as conn:
            deleted: int = conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created_at < cutoff)
            ).rowcount
        return deleted
