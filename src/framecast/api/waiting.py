"""Reading a request's status, and waiting for it to end: ``Prefer: wait=N`` on submit and
status (Replicate's header), and the status stream.

A wait holds neither a database connection nor the event loop: each read runs in a thread
and returns its connection, and between reads the wait sleeps on :class:`StatusWatch`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Depends, Header
from fastapi.concurrency import run_in_threadpool

from framecast import states
from framecast.api.services import Services
from framecast.api.views import status_body
from framecast.jobs import Job
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
        return min(int(value), MAX_WAIT_S) if value.isdigit() else None
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
) -> tuple[Job, dict[str, Any]] | None:
    """The request and the status route's exact body for it; None if this owner has no such
    request. Blocking: call it in a thread."""
    job = services.jobs.get(request_id, owner)
    if job is None:
        return None
    serving = None
    if job.status is Status.IN_QUEUE:
        serving = len(services.registry.serving(job.model, services.heartbeat_window))
    return job, status_body(job, base_url, services.jobs.queue_position(job), serving)


async def wait_for_end(
    services: Services, request_id: str, owner: str, base_url: str, seconds: float
) -> tuple[Job, dict[str, Any]] | None:
    """The request's status once it has ended, or after ``seconds`` as it is then."""
    if seconds <= 0:
        return await run_in_threadpool(read_status, services, request_id, owner, base_url)
    deadline = time.monotonic() + seconds
    with services.watch.follow(request_id) as following:
        while True:
            read = await run_in_threadpool(read_status, services, request_id, owner, base_url)
            left = deadline - time.monotonic()
            if read is None or read[0].status in states.TERMINAL or left <= 0:
                return read
            await following.changed(left)
