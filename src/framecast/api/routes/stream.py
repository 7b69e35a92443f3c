"""``GET /v1/requests/{id}/status/stream`` (fal's path): the request's status as server-sent
events, one ``status`` event per change (each progress step included), until it has ended.

Every event is read from the database, so a stream served by one API node follows a request
that workers and other nodes change. The reading is not the stream's: the process's one
:class:`~framecast.queue.status_watch.StatusWatch` reads every followed request (woken by PostgreSQL
NOTIFY, or polling on SQLite) and hands each stream the row, so an open stream costs no thread
and no query of its own. Open streams count against FRAMECAST_MAX_STREAMS_PER_KEY and
FRAMECAST_MAX_STREAMS (:mod:`framecast.api.wait_slots`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from framecast import states
from framecast.api.auth import KEYED, Owner
from framecast.api.request_ids import MALFORMED_ID, RequestIdPath
from framecast.api.routes.requests import NO_REQUEST, request_not_found
from framecast.api.services import AppServices, BaseUrl
from framecast.api.status_schema import STATUS_EVENT_STREAM
from framecast.api.wait_slots import WaitSlot
from framecast.api.waiting import WAIT_LIMIT, snapshot_body
from framecast.queue.status_watch import StatusWatch
from framecast.queue.views import status_body, wire

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


async def _once(body: dict[str, Any]) -> AsyncIterator[str]:
    yield status_event(body)


async def _events(watch: StatusWatch, request_id: str, base_url: str) -> AsyncGenerator[str, None]:
    last: dict[str, Any] | None = None
    sent_at = time.monotonic()
    with watch.follow(request_id) as following:
        while True:
            snapshot = await following.next(KEEPALIVE_S - (time.monotonic() - sent_at))
            if snapshot is None:
                yield ": keep-alive\n\n"
                sent_at = time.monotonic()
                continue
            body = wire(snapshot_body(snapshot, base_url))
            if body != last:
                yield status_event(body)
                last, sent_at = body, time.monotonic()
            if snapshot.job.status in states.TERMINAL:
                return


class _HeldStream(StreamingResponse):
    """The stream, holding its wait slot until the response is over however it ends: the
    request ended, the client went away (the server cancels the response), or the events never
    started (a client gone before the first byte cancels before the generator runs)."""

    def __init__(self, events: AsyncGenerator[str, None], slot: WaitSlot) -> None:
        super().__init__(events, media_type="text/event-stream", headers=_HEADERS)
        self.events = events
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
            # A generator left at a yield by the cancel stops following its request now, not
            # whenever it is collected.
            with anyio.CancelScope(shield=True):
                await self.events.aclose()


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
            "content": {"text/event-stream": STATUS_EVENT_STREAM},
        },
        **KEYED,
        **NO_REQUEST,
        **MALFORMED_ID,
        **WAIT_LIMIT,
    },
)
async def status_stream(
    request_id: RequestIdPath, owner: Owner, services: AppServices, base_url: BaseUrl
) -> StreamingResponse:
    """Follow a request's status as server-sent events until it has ended."""
    # Read before the stream starts, so an unknown id is a plain 404 like status's.
    job = await run_in_threadpool(services.jobs.get, request_id, owner)
    if job is None:
        raise request_not_found(request_id)
    if job.status in states.TERMINAL:
        # Nothing to wait for: its one event, and no slot taken.
        body = wire(status_body(job, base_url, None))
        return StreamingResponse(_once(body), media_type="text/event-stream", headers=_HEADERS)
    slot = services.waits.take(owner)  # a 429 past a cap, before anything is sent
    return _HeldStream(_events(services.watch, request_id, base_url), slot)
