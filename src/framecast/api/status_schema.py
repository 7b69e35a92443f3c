"""The status body in the OpenAPI document: what ``GET /v1/requests/{id}/status`` answers and
what each event of the status stream carries as its ``data``.

The body itself is built by :func:`framecast.api.views.status_body`; this is its description,
checked against real answers and real events by the tests (test_api_stream_schema.py). A
TypedDict, not a model: the fields a state lacks are absent from the body, not null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from framecast.states import Status


class StatusError(TypedDict):
    code: str
    message: str


class StatusBody(TypedDict):
    """A request's state. Which fields are there depends on `status`: `queue_position`
    (and `note`) while in_queue; `started_at`, `progress`, `phase`, `step`,
    `total_steps`, `attempt` (and `cancel_requested`) while in_progress; `started_at`
    and `finished_at` once it has ended; `error` when it failed."""

    request_id: str
    status: Status
    status_url: str
    result_url: str
    created_at: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    queue_position: NotRequired[
        Annotated[int, Field(ge=0, description="in_queue: how many queued requests run first.")]
    ]
    note: NotRequired[
        Annotated[str, Field(description="in_queue: no live worker serves its model.")]
    ]
    started_at: NotRequired[
        Annotated[
            str | None,
            Field(
                json_schema_extra={"format": "date-time"},
                description="null for a request cancelled while queued.",
            ),
        ]
    ]
    finished_at: NotRequired[
        Annotated[str | None, Field(json_schema_extra={"format": "date-time"})]
    ]
    progress: NotRequired[
        Annotated[float, Field(ge=0, le=1, description="in_progress: the fraction done.")]
    ]
    phase: NotRequired[
        Annotated[
            str | None,
            Field(description="in_progress: e.g. starting, encoding, denoising, decoding."),
        ]
    ]
    step: NotRequired[int | None]
    total_steps: NotRequired[int | None]
    attempt: NotRequired[
        Annotated[int, Field(ge=1, description="in_progress: which try this is (1 first).")]
    ]
    cancel_requested: NotRequired[
        Annotated[
            Literal[True], Field(description="in_progress: a cancel waits for the next step.")
        ]
    ]
    error: NotRequired[Annotated[StatusError, Field(description="failed: what went wrong.")]]


STATUS_EVENT_STREAM: dict[str, Any] = {
    # OpenAPI 3.2's way to describe a stream item by item (what FastAPI writes for its own
    # server-sent event routes): each event is `event: status` with the status body as JSON.
    "itemSchema": {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": "status"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": "#/components/schemas/StatusBody"},
            },
        },
    }
}
"""The ``text/event-stream`` media type of the status stream's 200 answer."""
