"""A request after submit: its status, its result, cancelling it. Each route sees only the
presenting key's requests; another key's request id answers exactly like an unknown one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from framecast.api.auth import KEYED, Owner
from framecast.api.errors import error_response, error_responses
from framecast.api.request_ids import MALFORMED_ID, RequestIdPath
from framecast.api.services import AppServices, BaseUrl, Services
from framecast.api.status_schema import StatusBody
from framecast.api.views import result_body, status_body
from framecast.api.waiting import WAIT_LIMIT, PreferWait, preference_applied, wait_for_end
from framecast.errors import FramecastError
from framecast.queue.jobs import CancelOutcome, Job

router = APIRouter(tags=["requests"])

NO_REQUEST = error_responses(
    {
        404: "No request with this id for this key (`request_not_found`); another key's "
        "requests look the same."
    }
)


def request_not_found(request_id: str) -> FramecastError:
    return FramecastError(f"no request with id {request_id}", code="request_not_found", status=404)


def _owned_job(services: Services, request_id: str, owner: str) -> Job:
    # Looked up in the route's own thread-pool trip: as a dependency of its own it would cost
    # one more trip per call (see docs/performance.md).
    job = services.jobs.get(request_id, owner)
    if job is None:
        raise request_not_found(request_id)
    return job


@router.get(
    "/v1/requests/{request_id}/status",
    responses={
        200: {"model": StatusBody, "description": "The request's state."},
        **KEYED,
        **NO_REQUEST,
        **MALFORMED_ID,
        **WAIT_LIMIT,
    },
)
async def status(
    request_id: RequestIdPath,
    owner: Owner,
    services: AppServices,
    base_url: BaseUrl,
    wait: PreferWait,
) -> JSONResponse:
    """The request's state; with `Prefer: wait=N`, once it has ended or after N seconds."""
    read = await wait_for_end(services, request_id, owner, base_url, wait or 0)
    if read is None:
        raise request_not_found(request_id)
    return JSONResponse(read[1], headers=preference_applied(wait))


@router.get("/v1/requests/{request_id}/result", responses={**KEYED, **NO_REQUEST, **MALFORMED_ID})
def result(
    request_id: RequestIdPath, owner: Owner, services: AppServices, base_url: BaseUrl
) -> dict[str, Any]:
    job = _owned_job(services, request_id, owner)
    return result_body(
        job,
        base_url,
        services.jobs.queue_position(job),
        services.storage,
        services.settings.link_ttl_seconds,
    )


@router.post(
    "/v1/requests/{request_id}/cancel",
    responses={
        200: {"description": 'Queued: cancelled, it never runs (`outcome: "cancelled"`).'},
        202: {
            "description": "Running: asked to stop at its next step (`cancel_requested`; "
            '`outcome: "cancel_requested"`, framecast\'s own value).',
            "content": {"application/json": {}},
        },
        **KEYED,
        **NO_REQUEST,
        **MALFORMED_ID,
        **error_responses(
            {
                409: "Already finished (`request_already_finished`, "
                '`outcome: "not_cancellable"`); `error.request` is its state.'
            }
        ),
    },
)
def cancel(
    request_id: RequestIdPath, owner: Owner, services: AppServices, base_url: BaseUrl
) -> JSONResponse:
    """Cancel: a queued request never runs; a running one stops at its next step."""
    outcome = services.jobs.cancel(request_id, owner)
    if outcome is None:
        raise request_not_found(request_id)
    kind, job = outcome
    body = status_body(job, base_url, services.jobs.queue_position(job))
    if kind is CancelOutcome.ALREADY_FINISHED:
        return error_response(
            409,
            "request_already_finished",
            f"request {job.id} is already {job.status.value} and cannot be cancelled",
            beside={"outcome": "not_cancellable"},  # RunComfy's value for a finished one
            request=body,
        )
    # 202: a running request is only asked to stop; its status shows when it has.
    # "outcome" as RunComfy's cancel answer ("cancelled"); "cancel_requested" is ours.
    if kind is CancelOutcome.CANCELLED:
        return JSONResponse({**body, "outcome": "cancelled"}, status_code=200)
    return JSONResponse({**body, "outcome": "cancel_requested"}, status_code=202)
