"""What happens around a submit: the ``Idempotency-Key`` (one request per key and body), the
key's limits (429 with Retry-After), and ``Prefer: wait`` on the answer.

The order is chosen so that a refusal costs little: a replayed key answers before any limit
is counted; the limits (and, with ``FRAMECAST_NO_WORKER_SUBMIT=refuse``, whether a live worker
serves the model) are checked before the image is downloaded; the active-request limit is
checked once more in the transaction that inserts the request (the first check is cheap but
can race with a concurrent submit; that one cannot), and the submit is counted against the rate
there: a submit refused for any reason uses none of the key's rate.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio
from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from framecast.admission.idempotency import Claim, IdempotencyConflict, body_hash, checked_key
from framecast.api.errors import error_responses
from framecast.api.services import Services
from framecast.api.wait_slots import WaitSlot
from framecast.api.waiting import preference_applied, wait_for_end
from framecast.contract.errors import ErrorCode
from framecast.contract.requests import Submitted
from framecast.errors import FramecastError
from framecast.queue.jobs import Job
from framecast.queue.views import NO_WORKER_NOTE, result_body, submitted, wire
from framecast.states import Status

InsertHook = Callable[[Connection, Job], None]
"""Runs in the transaction that inserts a request (``JobStore.submit``'s ``also``)."""

Submitter = Callable[[str | None, InsertHook | None], Awaitable[Submitted]]
"""Makes the request: given the id to give it (None: a new one) and a hook for its INSERT's
transaction; answers the submit body (``request_id`` and its URLs)."""

_CLAIM_POLL_S = 0.1
_CLAIM_SLACK_S = 5.0
"""A wait for a claim outlasts its abandonment by this much (the nodes' clocks may differ)."""


def idempotency_key(
    value: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Any string up to 255 characters (e.g. a UUID). The same key with the "
            "same body within 24 hours answers the request the first submit made, without "
            "making another (header `Idempotent-Replayed: true`); with a different body it is "
            "a 409 `idempotency_key_reused`.",
        ),
    ] = None,
) -> str | None:
    return checked_key(value) if value is not None else None


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]

SUBMIT_LIMIT_ERRORS = error_responses(
    {
        409: "The Idempotency-Key was used within 24 hours with a different body "
        "(`idempotency_key_reused`), or the submit that first used it is still running "
        "(`idempotency_key_in_progress`).",
        429: "A limit of this key: too many requests queued or running "
        "(`too_many_active_requests`, FRAMECAST_MAX_ACTIVE_PER_KEY) or too many submits in "
        "the current window (`rate_limited`, FRAMECAST_SUBMIT_RATE); with `Prefer: wait`, too "
        "many waits open (`too_many_streams`, FRAMECAST_MAX_STREAMS_PER_KEY; "
        "`server_streams_full`, FRAMECAST_MAX_STREAMS), refused before the request is made; "
        "or this key's bodies in flight fill its share (`too_many_bodies_in_flight`, "
        "FRAMECAST_MAX_INFLIGHT_BODY_BYTES_PER_KEY), refused before the body is read. "
        "`Retry-After` says in how many seconds to try again.",
    }
)
SUBMIT_LIMIT_ERRORS[429]["headers"] = {
    "Retry-After": {
        "description": "Seconds to wait before submitting again.",
        "schema": {"type": "integer"},
    }
}


class NoWorkerForModel(FramecastError):
    """FRAMECAST_NO_WORKER_SUBMIT=refuse, and no live worker serves the model submitted to."""

    code = ErrorCode.NO_WORKER_FOR_MODEL
    status = 503

    def __init__(self, model: str, retry_after: int) -> None:
        super().__init__(
            f"no live worker serves {model}: this server refuses requests for a model no worker "
            "serves (FRAMECAST_NO_WORKER_SUBMIT=refuse) rather than queue them; submit again "
            "once one has started (/readyz names the models no worker serves, and why)",
            retry_after=retry_after,
        )
        self.headers = {"Retry-After": str(retry_after)}


def _served(services: Services, model: str) -> bool:
    return bool(services.registry.serving(model, services.heartbeat_window))


def no_worker_note(services: Services, model: str) -> str | None:
    """The submit answer's note when no live worker serves ``model`` (None while one does);
    raises :class:`NoWorkerForModel` instead where the settings say to refuse. Blocking."""
    if _served(services, model):
        return None
    if services.settings.no_worker_submit == "refuse":
        # A worker that starts shows up within one heartbeat window.
        window = services.heartbeat_window.total_seconds()
        raise NoWorkerForModel(model, math.ceil(window))
    return NO_WORKER_NOTE


def _replay_note(services: Services, request_id: str, owner: str, model: str) -> str | None:
    """A replayed submit's note: the first answer's, while it still holds. Blocking."""
    job = services.jobs.get(request_id, owner)
    if job is None or job.status is not Status.IN_QUEUE or _served(services, model):
        return None
    return NO_WORKER_NOTE


def chain(*hooks: InsertHook | None) -> InsertHook | None:
    """One hook that runs each given one in order; None when none is given."""
    given = [hook for hook in hooks if hook is not None]
    if not given:
        return None

    def both(conn: Connection, job: Job) -> None:
        for hook in given:
            hook(conn, job)

    return both


async def admit(
    request: Request,
    *,
    model: str,
    body: BaseModel,
    owner: str,
    services: Services,
    base_url: str,
    key: str | None,
    wait: int | None,
    make: Submitter,
) -> JSONResponse:
    """Submit through ``make`` unless the key replays an earlier submit or a limit refuses."""
    # A wait's slot is taken before anything is made: a 429 past its cap leaves no request.
    taken = services.waits.take(owner) if wait else contextlib.nullcontext(None)
    with taken as slot:
        return await _admit(request, model, body, owner, services, base_url, key, wait, make, slot)


async def _admit(
    request: Request,
    model: str,
    body: BaseModel,
    owner: str,
    services: Services,
    base_url: str,
    key: str | None,
    wait: int | None,
    make: Submitter,
    slot: WaitSlot | None,
) -> JSONResponse:
    claim: Claim | None = None
    if key is not None:
        # In a thread: the body may hold a 70 MB data: URI, too much to hash on the loop.
        digest = await run_in_threadpool(
            lambda: body_hash(
                model,
                body.model_dump(mode="json", exclude_unset=True),
                request.query_params.multi_items(),
            )
        )
        claim = await _claim(services, owner, key, digest)
        if claim.replay:
            note = None
            if wait is None:
                note = await run_in_threadpool(
                    _replay_note, services, claim.request_id, owner, model
                )
            return await _answer(
                services,
                claim.request_id,
                owner,
                base_url,
                wait,
                {"Idempotent-Replayed": "true"},
                slot,
                note,
            )
    try:
        # Queued by default, as RunComfy queues: workers may start after the API (a fleet, an
        # autoscaler that starts them on queue depth). The answer says that none serves it yet.
        note = await run_in_threadpool(no_worker_note, services, model)
        guard = await run_in_threadpool(_check_limits, services, owner)
        if claim is not None and key is not None:
            # Made only while the claim is still this submit's (see IdempotencyStore).
            guard = chain(services.idempotency.insert_guard(owner, key, claim.request_id), guard)
        made = await make(claim.request_id if claim else None, guard)
    except BaseException:
        if claim is not None and key is not None:
            # Let the client retry with the same key. Shielded: a client that hung up
            # cancels this request, and the claim must still go.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(services.idempotency.release, owner, key, claim.request_id)
        raise
    return await _answer(services, made.request_id, owner, base_url, wait, {}, slot, note)


def _check_limits(services: Services, owner: str) -> InsertHook | None:
    """Refuse the submit (QuotaExceeded) when a limit already says no; the hook that counts it
    against the rate and checks the active-request limit again with the INSERT (so only a
    request made is counted: a 422 for its image, say, uses none of the key's rate)."""
    quotas = services.quotas
    limits = quotas.limits_for(owner)
    if limits.max_active is not None:
        quotas.check_active(limits.max_active, quotas.active(owner) + 1)
    if limits.rate is not None:
        quotas.check_rate(owner, limits.rate)
    if limits.max_active is None and limits.rate is None:
        return None
    return quotas.insert_guard(owner, limits)


async def _claim(services: Services, owner: str, key: str, digest: str) -> Claim:
    """The key's claim: ours for a new request, or the request an earlier submit made (waiting
    while a concurrent submit with the same key and body is still making it)."""
    request_id = str(uuid.uuid4())
    # Longer than a claim takes to be abandoned: a retry after the API died mid-submit waits
    # for that, then takes the key over, rather than answering 409 while the claim ages.
    patience = services.idempotency.abandoned_after.total_seconds() + _CLAIM_SLACK_S
    deadline = time.monotonic() + patience
    while True:
        claim = await run_in_threadpool(services.idempotency.claim, owner, key, digest, request_id)
        if claim is not None:
            return claim
        if time.monotonic() > deadline:
            raise IdempotencyConflict(
                f"the submit that first used Idempotency-Key '{key}' is still running after "
                f"{patience:g} s; ask again shortly with the same key and body",
                code=ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS,
            )
        await anyio.sleep(_CLAIM_POLL_S)


async def _answer(
    services: Services,
    request_id: str,
    owner: str,
    base_url: str,
    wait: int | None,
    headers: dict[str, str],
    slot: WaitSlot | None,
    note: str | None = None,
) -> JSONResponse:
    """The submit answer; with ``Prefer: wait``, once the request has ended (or the wait is
    over) with its status, or its result when completed, beside the submit fields. ``note``:
    why the request may wait long (no worker serves its model); a status after a wait says
    that itself, if it still applies."""
    answer = submitted(base_url, request_id)
    if note is not None and wait is None:
        answer = answer.model_copy(update={"note": note})
    body = wire(answer)
    if wait is not None:
        read = await wait_for_end(services, request_id, owner, base_url, wait, slot)
        if read is not None:
            job, state = read
            if job.status is Status.COMPLETED:
                state = await run_in_threadpool(
                    result_body,
                    job,
                    base_url,
                    None,
                    services.storage,
                    services.settings.link_ttl_seconds,
                )
            body = {**wire(state), **body}
        headers = {**headers, **preference_applied(wait)}
    return JSONResponse(body, headers=headers)
