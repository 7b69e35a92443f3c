"""What happens around a submit: the ``Idempotency-Key`` (one request per key and body), the
key's limits (429 with Retry-After), and ``Prefer: wait`` on the answer.

The order is chosen so that a refusal costs little: a replayed key answers before any limit
is counted; the limits are checked before the image is downloaded; the active-request limit is
checked once more in the transaction that inserts the request (the first check is cheap but
can race with a concurrent submit; that one cannot).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from framecast.api.errors import error_responses
from framecast.api.services import Services
from framecast.api.views import request_urls, result_body
from framecast.api.waiting import preference_applied, wait_for_end
from framecast.idempotency import Claim, IdempotencyConflict, body_hash, checked_key
from framecast.jobs import Job
from framecast.states import Status

InsertHook = Callable[[Connection, Job], None]
"""Runs in the transaction that inserts a request (``JobStore.submit``'s ``also``)."""

Submitter = Callable[[str | None, InsertHook | None], Awaitable[dict[str, Any]]]
"""Makes the request: given the id to give it (None: a new one) and a hook for its INSERT's
transaction; answers the submit body (``request_id`` and its URLs)."""

_CLAIM_POLL_S = 0.1


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
        "the current window (`rate_limited`, FRAMECAST_SUBMIT_RATE). `Retry-After` says in "
        "how many seconds to try again.",
    }
)
SUBMIT_LIMIT_ERRORS[429]["headers"] = {
    "Retry-After": {
        "description": "Seconds to wait before submitting again.",
        "schema": {"type": "integer"},
    }
}


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
            return await _answer(
                services, claim.request_id, owner, base_url, wait, {"Idempotent-Replayed": "true"}
            )
    try:
        guard = await run_in_threadpool(_check_limits, services, owner)
        submitted = await make(claim.request_id if claim else None, guard)
    except BaseException:
        if claim is not None and key is not None:
            # Let the client retry with the same key. Shielded: a client that hung up
            # cancels this request, and the claim must still go.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(services.idempotency.release, owner, key, claim.request_id)
        raise
    return await _answer(services, str(submitted["request_id"]), owner, base_url, wait, {})


def _check_limits(services: Services, owner: str) -> InsertHook | None:
    """Refuse the submit (QuotaExceeded) when a limit already says no; the hook that checks the
    active-request limit again with the INSERT."""
    quotas = services.quotas
    limits = quotas.limits_for(owner)
    if limits.max_active is not None:
        quotas.check_active(limits.max_active, quotas.active(owner) + 1)
    if limits.rate is not None:
        quotas.count_submit(owner, limits.rate)
    return quotas.active_guard(owner, limits.max_active) if limits.max_active else None


async def _claim(services: Services, owner: str, key: str, digest: str) -> Claim:
    """The key's claim: ours for a new request, or the request an earlier submit made (waiting
    while a concurrent submit with the same key and body is still making it)."""
    request_id = str(uuid.uuid4())
    patience = services.settings.fetch_timeout_seconds + 10
    deadline = time.monotonic() + patience
    while True:
        claim = await run_in_threadpool(services.idempotency.claim, owner, key, digest, request_id)
        if claim is not None:
            return claim
        if time.monotonic() > deadline:
            raise IdempotencyConflict(
                f"the submit that first used Idempotency-Key '{key}' is still running after "
                f"{patience:g} s; ask again shortly with the same key and body",
                code="idempotency_key_in_progress",
            )
        await anyio.sleep(_CLAIM_POLL_S)


async def _answer(
    services: Services,
    request_id: str,
    owner: str,
    base_url: str,
    wait: int | None,
    headers: dict[str, str],
) -> JSONResponse:
    """The submit answer; with ``Prefer: wait``, once the request has ended (or the wait is
    over) with its status, or its result when completed, beside the submit fields."""
    body: dict[str, Any] = {"request_id": request_id, **request_urls(base_url, request_id)}
    if wait is not None:
        read = await wait_for_end(services, request_id, owner, base_url, wait)
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
            body = {**state, **body}
        headers = {**headers, **preference_applied(wait)}
    return JSONResponse(body, headers=headers)
