"""The outbox: a delivery row written in the same transaction as the status change it reports.

A status change and its delivery therefore commit together or not at all: a crash after the
commit leaves a pending row for a dispatcher to send (after a restart, or on another node), and
a crash before it leaves neither. Nothing is sent from inside the transaction.

Which changes are reported: every terminal status (completed, failed, cancelled) always; with
``webhook_intermediate_status=true`` also ``in_queue`` (at submit, and when a request goes back
to the queue) and ``in_progress`` (when a worker takes it), as RunComfy does. Progress steps are
not: a 50-step video would make 50 POSTs for what the status stream already shows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from framecast.db import request_webhooks, requests, utcnow, webhook_deliveries
from framecast.db.backend import notify
from framecast.queue.jobs import Job, StatusChange
from framecast.queue.views import status_body, wire
from framecast.states import TERMINAL, Status

WEBHOOK_CHANNEL = "framecast_webhooks"
"""PostgreSQL NOTIFY channel: a delivery is waiting (dispatchers LISTEN on it)."""


@dataclass(frozen=True)
class WebhookTarget:
    """What a submit asked for: where to deliver, and whether intermediate statuses count."""

    url: str
    intermediate: bool
    base_url: str
    """The API root the client used; links in the payload start with it."""


def new_delivery_id() -> str:
    """``msg_...``: the ``webhook-id`` of every attempt of one delivery (receivers de-duplicate
    on it)."""
    return "msg_" + uuid.uuid4().hex


def _reported(status: Status, intermediate: bool) -> bool:
    return status in TERMINAL or intermediate


def snapshot(job: Job, base_url: str) -> dict[str, Any]:
    """The payload as of the change: the status answer's body, as the status route gives it,
    less the queue position (not known inside the change's transaction without counting the
    queue). A terminal delivery is rebuilt from the request when sent (fresh output links)."""
    body = wire(status_body(job, base_url, queue_position=None))
    body.pop("queue_position", None)
    return body


def _insert_delivery(conn: Connection, job: Job, target: WebhookTarget) -> None:
    now = utcnow()
    conn.execute(
        insert(webhook_deliveries).values(
            id=new_delivery_id(),
            request_id=job.id,
            owner=job.owner,
            url=target.url,
            event=job.status.value,
            payload=snapshot(job, target.base_url),
            state="pending",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
    )
    notify(conn, WEBHOOK_CHANNEL)  # delivered at commit, so a woken dispatcher finds the row


def register(conn: Connection, job: Job, target: WebhookTarget) -> None:
    """Record a new request's webhook, in its INSERT's transaction (JobStore.submit's
    ``also``); with intermediate statuses, its first delivery (``in_queue``) too."""
    conn.execute(
        insert(request_webhooks).values(
            request_id=job.id,
            url=target.url,
            base_url=target.base_url,
            intermediate=target.intermediate,
        )
    )
    if _reported(job.status, target.intermediate):
        _insert_delivery(conn, job, target)


def record_change(conn: Connection, change: StatusChange) -> None:
    """A :data:`framecast.queue.jobs.StatusListener`: one delivery for a change worth reporting of a
    request that has a webhook. Its exceptions roll the change back, by design: a change whose
    delivery cannot be recorded must not commit without it."""
    row = conn.execute(
        select(request_webhooks).where(request_webhooks.c.request_id == change.request_id)
    ).one_or_none()
    if row is None or not _reported(change.target, row.intermediate):
        return
    job = Job.from_row(
        conn.execute(select(requests).where(requests.c.id == change.request_id)).mappings().one()
    )
    _insert_delivery(conn, job, WebhookTarget(row.url, row.intermediate, row.base_url))
