"""A request after submit: its status, its result, cancelling it. Each route sees only the
presenting key's requests; another key's request id answers exactly like an unknown one."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from framecast.api.auth import KEYED, Owner
from framecast.api.errors import error_response, error_responses
from framecast.api.request_ids import MALFORMED_ID, RequestIdPath
from framecast.api.services import AppServices, BaseUrl, Services
from framecast.api.waiting import WAIT_LIMIT, PreferWait, preference_applied, wait_for_end
from framecast.contract.errors import ErrorCode
from framecast.contract.requests import CancelResult, RequestResult, RequestStatus
from framecast.errors import FramecastError
from framecast.queue.jobs import CancelOutcome, Job
from framecast.queue.views import result_body, status_body, wire

router = APIRouter(tags=["requests"])

NO_REQUEST = error_responses(
    {
        404: "No request with this id for this key (`request_not_found`); another key's "
        "requests look the same."
    }
)


def request_not_found(request_id: str) -> FramecastError:
    return FramecastError(
        f"no request with id {request_id}", code=ErrorCode.REQUEST_NOT_FOUND, status=404
    )


def _owned_job(services: Services, request_id: str, owner: str) -> Job:
    # Looked up in the route's own thread-pool trip: as a dependency of its own it would cost
    # one more trip per call (see docs/performance.md).
    job = services.jobs.get(request_id, owner)
    if job is None:
        raise request_not_found(request_id)
    return job


# The routes answer JSONResponses of wire() bodies (only the fields a state has); the response
# models describe them in the document.
@router.get(
    "/v1/requests/{request_id}/status",
    response_model=RequestStatus,
    responses={
        200: {"description": "The request's state."},
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
    return JSONResponse(wire(read[1]), headers=preference_applied(wait))


@router.get(
    "/v1/requests/{request_id}/result",
    response_model=RequestResult,
    responses={
        200: {
            "description": "Completed: the outputs, as links that expire. Before that, the "
            "request's state, as the status route answers it."
        },
        **KEYED,
        **NO_REQUEST,
        **MALFORMED_ID,
    },
)
def result(
    request_id: RequestIdPath, owner: Owner, services: AppServices, base_url: BaseUrl
) -> JSONResponse:
    job = _owned_job(services, request_id, owner)
    body = result_body(
        job,
        base_url,
        services.jobs.queue_position(job),
        services.storage,
        services.settings.link_ttl_seconds,
    )
    return JSONResponse(wire(body))


@router.post(
    "/v1/requests/{request_id}/cancel",
    response_model=CancelResult,
    responses={
        200: {"description": 'Queued: cancelled, it never runs (`outcome: "cancelled"`).'},
        202: {
            "description": "Running: asked to stop at its next step (`cancel_requested`; "
            '`outcome: "cancel_requested"`, framecast\'s own value).',
            "model": CancelResult,
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
    body = wire(status_body(job, base_url, services.jobs.queue_position(job)))
    if kind is CancelOutcome.ALREADY_FINISHED:
        return error_response(
            409,
            ErrorCode.REQUEST_ALREADY_FINISHED,
            f"request {job.id} is already {job.status.value} and cannot be cancelled",
            beside={"outcome": "not_cancellable"},  # RunComfy's value for a finished one
            request=body,
        )
    # 202: a running request is only asked to stop; its status shows when it has.
    # "outcome" as RunComfy's cancel answer ("cancelled"); "cancel_requested" is ours.
    if kind is CancelOutcome.CANCELLED:
        return JSONResponse({**body, "outcome": "cancelled"}, status_code=200)
    return JSONResponse({**body, "outcome": "cancel_requested"}, status_code=202)
