"""Reading a request's status, and waiting for it to end: ``Prefer: wait=N`` on submit and
status (Replicate's header), and the status stream.

A wait holds neither a database connection, a thread nor the event loop: it awaits the
process's :class:`~framecast.queue.status_watch.StatusWatch`, which reads for every wait at once and
hands each the row it read. Each wait holds a slot (:mod:`framecast.api.wait_slots`): 429 past
FRAMECAST_MAX_STREAMS_PER_KEY or FRAMECAST_MAX_STREAMS.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Header
from fastapi.concurrency import run_in_threadpool

from framecast import states
from framecast.api.errors import error_responses
from framecast.api.services import Services
from framecast.api.wait_slots import WaitSlot
from framecast.contract.requests import RequestStatus
from framecast.queue.jobs import Job
from framecast.queue.status_watch import Snapshot
from framecast.queue.views import status_body
from framecast.states import Status

MAX_WAIT_S = 60
"""The longest ``Prefer: wait`` honoured; a longer one is cut to this (as Replicate does)."""


def parse_prefer_wait(header: str | None) -> int | None:
    """The seconds ``Prefer: wait[=N]`` asks for (RFC 7240: comma-separated preferences,
    ``;`` parameters), cut to :data:`MAX_WAIT_S`; a bare ``wait`` is the longest. None when
    there is no wait preference, or its value is not a whole number of seconds (an unknown
    preference is ignored, as RFC 7240 says)."""
    for preference in (header or "").split(","):
        name, _, value = preference.split(";")[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not value:
            return MAX_WAIT_S
        # ASCII digits only (isdigit() takes "²", which int() refuses), and never more of them
        # than the cap has: int() refuses numbers past 4,300 digits, and any longer is over it.
        if not (value.isascii() and value.isdigit()):
            return None
        digits = value.lstrip("0") or "0"
        return MAX_WAIT_S if len(digits) > len(str(MAX_WAIT_S)) else min(int(digits), MAX_WAIT_S)
    return None


def prefer_wait(
    prefer: Annotated[
        str | None,
        Header(
            alias="Prefer",
            description=f"`wait=N`: answer when the request has ended (completed, failed or "
            f"cancelled) or after N seconds, whichever is first; N above {MAX_WAIT_S} is taken "
            f"as {MAX_WAIT_S}. The answer's `Preference-Applied` says what was applied.",
        ),
    ] = None,
) -> int | None:
    return parse_prefer_wait(prefer)


PreferWait = Annotated[int | None, Depends(prefer_wait)]


def preference_applied(wait: int | None) -> dict[str, str]:
    return {"Preference-Applied": f"wait={wait}"} if wait is not None else {}


def read_status(
    services: Services, request_id: str, owner: str, base_url: str
) -> tuple[Job, RequestStatus] | None:
    """The request and the status route's answer for it; None if this owner has no such
    request. Blocking: call it in a thread."""
    job = services.jobs.get(request_id, owner)
    if job is None:
        return None
    serving = None
    if job.status is Status.IN_QUEUE:
        serving = len(services.registry.serving(job.model, services.heartbeat_window))
    return job, status_body(job, base_url, services.jobs.queue_position(job), serving)


def snapshot_body(snapshot: Snapshot, base_url: str) -> RequestStatus:
    """The status route's answer for the request as the watcher read it."""
    return status_body(snapshot.job, base_url, snapshot.queue_position, snapshot.workers_serving)


WAIT_LIMIT = error_responses(
    {
        429: "Too many waits open: this key's status streams and `Prefer: wait` answers "
        "(`too_many_streams`, FRAMECAST_MAX_STREAMS_PER_KEY) or this server's "
        "(`server_streams_full`, FRAMECAST_MAX_STREAMS). `Retry-After` says in how many "
        "seconds to try again; polling the status meanwhile is never refused by this limit."
    }
)
WAIT_LIMIT[429]["headers"] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}


async def wait_for_end(
    services: Services,
    request_id: str,
    owner: str,
    base_url: str,
    seconds: float,
    slot: WaitSlot | None = None,
) -> tuple[Job, RequestStatus] | None:
    """The request's status once it has ended, or after ``seconds`` as it is then.

    Only a wait takes a slot (QuotaExceeded, a 429, past a cap): not an answer given at once,
    for no wait or a request already ended. ``slot``: one the caller took and releases."""
    read = await run_in_threadpool(read_status, services, request_id, owner, base_url)
    if seconds <= 0 or read is None or read[0].status in states.TERMINAL:
        return read
    deadline = time.monotonic() + seconds
    held = slot if slot is not None else services.waits.take(owner)
    try:
        with services.watch.follow(request_id) as following:
            while (left := deadline - time.monotonic()) > 0:
                snapshot = await following.next(left)
                if snapshot is not None and snapshot.job.status in states.TERMINAL:
                    return snapshot.job, snapshot_body(snapshot, base_url)
    finally:
        if slot is None:
            held.release()
    # The wait is over and the request has not ended: as it is now.
    return await run_in_threadpool(read_status, services, request_id, owner, base_url)
