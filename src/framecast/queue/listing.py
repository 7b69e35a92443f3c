"""A key's requests, newest first, a page at a time: the query behind ``GET /v1/requests``.

Pages are cut by ``seq`` (the queue's order, which is also the order of creation), so a page
never repeats or skips a request when new ones arrive in between. The cursor is opaque to
clients: a versioned, base64-encoded position.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from sqlalchemy import Engine, select

from framecast.db import requests
from framecast.queue.jobs import Job
from framecast.states import Status

_CURSOR_PREFIX = "v1:"
_MAX_SEQ = 2**63 - 1
"""``seq`` is a BIGINT: a larger position is not one this server handed out, and PostgreSQL
would refuse to compare with it."""


class BadCursor(ValueError):
    pass


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor stands for; :class:`BadCursor` for anything this server did not
    hand out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadCursor(cursor) from exc
    number = text.removeprefix(_CURSOR_PREFIX)
    # isdigit() alone takes "²" and other digits int() refuses; ASCII ones only, and few
    # enough that int() never meets Python's limit on digits.
    if not text.startswith(_CURSOR_PREFIX) or not (number.isascii() and number.isdigit()):
        raise BadCursor(cursor)
    if len(number) > len(str(_MAX_SEQ)) or int(number) > _MAX_SEQ:
        raise BadCursor(cursor)
    return int(number)


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


def list_requests(
    engine: Engine,
    owner: str,
    *,
    limit: int,
    status: Status | None = None,
    model: str | None = None,
    cursor: str | None = None,
) -> Page:
    """One page of ``owner``'s requests, newest first, after ``cursor`` (from the previous
    page). :class:`BadCursor` for a cursor that is not one."""
    query = select(requests).where(requests.c.owner == owner, requests.c.deleted_at.is_(None))
    if status is not None:
        query = query.where(requests.c.status == status.value)
    if model is not None:
        query = query.where(requests.c.model == model)
    if cursor is not None:
        query = query.where(requests.c.seq < decode_cursor(cursor))
    # One more than a page: whether there is a next page, without counting.
    query = query.order_by(requests.c.seq.desc()).limit(limit + 1)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    jobs = [Job.from_row(row) for row in rows[:limit]]
    more = len(rows) > limit and jobs
    return Page(jobs, encode_cursor(jobs[-1].seq) if more else None)


@dataclass(frozen=True)
class IdPage:
    jobs: list[Job]
    has_more: bool


def list_after(
    engine: Engine, owner: str, *, limit: int, after: str | None, ascending: bool
) -> IdPage:
    """One page of ``owner``'s requests after the request ``after`` (an id, as OpenAI's
    ``after`` cursor is), oldest or newest first. :class:`BadCursor` for an id that is not
    one of ``owner``'s requests."""
    mine = (requests.c.owner == owner, requests.c.deleted_at.is_(None))
    query = select(requests).where(*mine)
    with engine.connect() as conn:
        if after is not None:
            seq = conn.execute(
                select(requests.c.seq).where(requests.c.id == after, *mine)
            ).scalar_one_or_none()
            if seq is None:
                raise BadCursor(after)
            query = query.where(requests.c.seq > seq if ascending else requests.c.seq < seq)
        order = requests.c.seq.asc() if ascending else requests.c.seq.desc()
        rows = conn.execute(query.order_by(order).limit(limit + 1)).mappings().all()
    return IdPage([Job.from_row(row) for row in rows[:limit]], len(rows) > limit)
