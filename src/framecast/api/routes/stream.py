"""``GET /v1/requests/{id}/status/stream`` (fal's path): the request's status as server-sent
events, one ``status`` event per change (each progress step included), until it has ended.

Every event is read from the database, so a stream served by one API node follows a request
that workers and other nodes change; between reads it waits on the node's
:class:`~framecast.status_watch.StatusWatch` (PostgreSQL NOTIFY, or short polling on SQLite).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from framecast import states
from framecast.api.auth import KEYED, Owner
from framecast.api.routes.requests import NO_REQUEST, request_not_found
from framecast.api.services import AppServices, BaseUrl, Services
from framecast.api.waiting import read_status

router = APIRouter(tags=["requests"])

KEEPALIVE_S = 15.0
"""A comment line at least this often while nothing changes: proxies and load balancers close
connections idle for longer (nginx's default read timeout is 60 s)."""

_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx buffers proxied responses unless told not to: events would arrive in bursts.
    "X-Accel-Buffering": "no",
}


def status_event(body: dict[str, Any]) -> str:
    """One SSE event: ``data`` is the status route's exact JSON body, on one line."""
    return f"event: status\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


async def _events(
    services: Services, request_id: str, owner: str, base_url: str
) -> AsyncIterator[str]:
    last: dict[str, Any] | None = None
    sent_at = time.monotonic()
    with services.watch.follow(request_id) as following:
        while True:
            read = await run_in_threadpool(read_status, services, request_id, owner, base_url)
            if read is None:  # pragma: no cover - requests are never deleted
                return
            job, body = read
            if body != last:
                yield status_event(body)
                last, sent_at = body, time.monotonic()
            if job.status in states.TERMINAL:
                return
            if time.monotonic() - sent_at >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                sent_at = time.monotonic()
            await following.changed(KEEPALIVE_S - (time.monotonic() - sent_at))


@router.get(
    "/v1/requests/{request_id}/status/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events: `event: status`, whose `data` is the body "
            "`GET /v1/requests/{id}/status` answers, once at the start and on every change "
            "(queue position, status, each progress step); the stream ends after an event "
            f"with a final status (completed, failed, cancelled). Comment lines every "
            f"{KEEPALIVE_S:g} s keep idle connections open.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **KEYED,
        **NO_REQUEST,
    },
)
async def status_stream(
    request_id: str, owner: Owner, services: AppServices, base_url: BaseUrl
) -> StreamingResponse:
    """Follow a request's status as server-sent events until it has ended."""
    # Checked before the stream starts, so an unknown id is a plain 404 like status's.
    if await run_in_threadpool(services.jobs.get, request_id, owner) is None:
        raise request_not_found(request_id)
    return StreamingResponse(
        _events(services, request_id, owner, base_url),
        media_type="text/event-stream",
        headers=_HEADERS,
    )
