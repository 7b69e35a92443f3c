"""``GET /v1/requests``: the presenting key's own requests, newest first, a page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from framecast.api.auth import KEYED, Owner
from framecast.api.errors import error_response, error_responses
from framecast.api.services import AppServices, BaseUrl, Services
from framecast.contract.errors import ErrorCode
from framecast.contract.requests import RequestPage
from framecast.queue.listing import BadCursor, list_requests
from framecast.queue.views import status_body, wire
from framecast.states import Status

router = APIRouter(tags=["requests"])

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def _page(
    services: Services,
    owner: str,
    base_url: str,
    limit: int,
    status: Status | None,
    model: str | None,
    cursor: str | None,
) -> RequestPage:
    page = list_requests(services.db, owner, limit=limit, status=status, model=model, cursor=cursor)
    serving: dict[str, int] = {}  # per model, once a page: a queued one's note needs it
    bodies = []
    for job in page.jobs:
        if job.status is Status.IN_QUEUE and job.model not in serving:
            workers = services.registry.serving(job.model, services.heartbeat_window)
            serving[job.model] = len(workers)
        position = services.jobs.queue_position(job)
        bodies.append(status_body(job, base_url, position, serving.get(job.model)))
    return RequestPage(requests=bodies, next_cursor=page.next_cursor)


@router.get(
    "/v1/requests",
    response_model=RequestPage,
    responses={
        200: {"description": "A page of this key's requests."},
        **KEYED,
        **error_responses(
            {
                422: "A parameter out of range: `limit` outside 1 to "
                f"{MAX_LIMIT}, an unknown `status`, a `model` with control characters, or a "
                "`cursor` this server did not hand out (`invalid_input`; `detail` names the "
                "parameter)."
            }
        ),
    },
)
async def requests_page(
    owner: Owner,
    services: AppServices,
    base_url: BaseUrl,
    status: Annotated[Status | None, Query(description="Only requests in this state.")] = None,
    model: Annotated[
        str | None,
        # No control characters: PostgreSQL refuses a NUL in a text parameter (a 500 unless
        # refused here), and no model id has any.
        Query(
            max_length=200,
            pattern=r"^[^\x00-\x1f\x7f]*$",
            description="Only requests for this model id.",
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Requests per page.")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="`next_cursor` of the previous page."),
    ] = None,
) -> JSONResponse:
    """This key's requests, newest first (another key's never appear)."""
    try:
        page = await run_in_threadpool(
            _page, services, owner, base_url, limit, status, model, cursor
        )
    except BadCursor:
        message = "cursor is not one this server handed out; pass a page's next_cursor as it is"
        return error_response(
            422,
            ErrorCode.INVALID_INPUT,
            message,
            detail=[{"loc": ["query", "cursor"], "msg": message, "type": "invalid_cursor"}],
        )
    # Each entry with only the fields its state has, as the status route answers it.
    return JSONResponse(wire(page))
