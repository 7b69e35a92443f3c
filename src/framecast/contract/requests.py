"""A request's bodies on the wire: the submit answer, its status, its result, the cancel
answer and a page of the listing.

One model per body, for both sides. The server builds them (:mod:`framecast.queue.views`)
and sends only the fields it set (``exclude_unset``): a field a state lacks is absent, not
null, as RunComfy's clients expect. The client parses framecast's answers and RunComfy's with
the same models, so they are lenient where the schema is precise: every model keeps fields it
does not know (``extra="allow"``), a field framecast always sends is optional to the parse
(RunComfy's answers lack some), and ``status`` and ``error.code`` are parsed as any string but
documented as the values framecast sends.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema

from framecast.contract.errors import ErrorCode


class Status(StrEnum):
    """The states a request goes through (:mod:`framecast.states` has the machine)."""

    IN_QUEUE = "in_queue"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _one_of(values: type[StrEnum], description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "enum": [v.value for v in values], "description": description}
    )


StatusName = Annotated[
    str, _one_of(Status, "in_queue, in_progress, then completed, failed or cancelled.")
]
"""A request's status: the document lists framecast's values; the parse takes any string
(a client reading RunComfy or a newer server must not break on one it does not know)."""

ErrorCodeName = Annotated[str, _one_of(ErrorCode, "Stable and machine-readable.")]

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""UTC, ISO 8601 with a ``Z``."""


def _always_sent(*fields: str) -> Callable[[dict[str, Any]], None]:
    """The schema lists these as required: framecast always sends them, though the parse does
    not require them (RunComfy's answers may lack them)."""

    def extra(schema: dict[str, Any]) -> None:
        schema["required"] = [*schema.get("required", ()), *fields]

    return extra


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Submitted(_Answer):
    """The answer to a submit: the request's id and where to follow it. With ``Prefer: wait``
    the request's status (or, once completed, its result) comes beside these fields."""

    model_config = ConfigDict(
        json_schema_extra=_always_sent("status_url", "result_url", "cancel_url")
    )

    request_id: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None
    note: str | None = Field(
        None,
        description="No live worker serves the model: the request is queued until one starts "
        "(FRAMECAST_NO_WORKER_SUBMIT=refuse makes this a 503 instead).",
    )


class JobError(_Answer):
    """Why a request failed (a ``failed`` status carries it)."""

    code: ErrorCodeName = "failed"
    message: str = "the request failed"


class RequestStatus(_Answer):
    """A request's state, as ``GET /v1/requests/{id}/status`` answers it (and as the status
    stream sends it). Which fields are there depends on ``status``: ``queue_position`` (and
    ``note``) while ``in_queue``; ``started_at``, ``progress``, ``phase``, ``step``,
    ``total_steps``, ``attempt`` (and ``cancel_requested``) while ``in_progress``;
    ``started_at`` and ``finished_at`` once it has ended; ``error`` when ``failed``."""

    model_config = ConfigDict(
        json_schema_extra=_always_sent("status_url", "result_url", "created_at")
    )

    # In the order the fields are sent (the order of the JSON before these models).
    request_id: str
    status: StatusName
    status_url: str | None = None
    result_url: str | None = None
    created_at: Timestamp | None = None
    queue_position: int | None = Field(
        None, description="in_queue: how many queued requests run first."
    )
    note: str | None = Field(
        None,
        description="in_queue: no live worker serves its model; an expired request: its "
        "deadline; a result whose files retention deleted: that they are gone.",
    )
    started_at: Timestamp | None = Field(
        None, description="null for a request cancelled while queued."
    )
    progress: float | None = Field(None, description="in_progress: the fraction done, 0 to 1.")
    phase: str | None = Field(
        None, description="in_progress: e.g. starting, encoding, denoising, decoding."
    )
    step: int | None = None
    total_steps: int | None = None
    attempt: int | None = Field(None, description="in_progress: which try this is (1 first).")
    cancel_requested: bool | None = Field(
        None, description="in_progress: a cancel waits for the next step."
    )
    finished_at: Timestamp | None = None
    outcome: str | None = Field(
        None,
        description="cancelled: `expired` when its start deadline (X-Fal-Request-Timeout) "
        "passed while it was queued; it never ran (`note` says when).",
    )
    error: JobError | None = Field(None, description="failed: what went wrong.")

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED


SUCCEEDED = frozenset({Status.COMPLETED.value, "succeeded"})
"""Statuses that mean the video is ready (RunComfy and framecast say ``completed``)."""

TERMINAL = SUCCEEDED | frozenset({Status.FAILED.value, "error", Status.CANCELLED.value, "canceled"})
"""Statuses after which nothing changes any more; polling stops at them."""


class Output(_Answer):
    """A result's outputs: which of these are set is the model's output schema (framecast's
    models give ``video``; RunComfy's output schema allows the others too)."""

    video: str | None = None
    image: str | None = None
    videos: list[str] | None = None
    images: list[str] | None = None

    @property
    def video_url(self) -> str | None:
        """The (first) video's link, whichever field carries it."""
        return self.video or (self.videos[0] if self.videos else None)


class RequestResult(RequestStatus):
    """``GET /v1/requests/{id}/result``: when ``completed``, the outputs (``output`` null and
    ``data_removed_at`` set once retention deleted the files); before that the same fields as
    a status, so it can be polled."""

    model_config = ConfigDict(json_schema_extra=None)

    output: Output | None = None
    poster: str | None = Field(None, description="The poster image (the first frame).")
    links_expire_at: Timestamp | None = Field(
        None, description="When the signed output links stop working; ask again for new ones."
    )
    data_removed_at: Timestamp | None = None
    metadata: dict[str, JsonValue] | None = Field(
        None, description="What made the video: the engine, its settings, the seed, timings."
    )
    input: dict[str, JsonValue] | None = Field(None, description="The input, as submitted.")

    @property
    def video_url(self) -> str | None:
        return self.output.video_url if self.output is not None else None


CANCEL_OUTCOMES = ("cancelled", "cancel_requested", "not_cancellable")


class CancelResult(RequestStatus):
    """The answer to a cancel: the request's status and the ``outcome``: ``cancelled`` (it was
    queued and never runs), ``cancel_requested`` (framecast: it was running and stops at its
    next step) or ``not_cancellable`` (it had already finished: framecast answers 409 with the
    state in ``error.request``; RunComfy does not cancel running ones)."""

    model_config = ConfigDict(
        json_schema_extra=_always_sent("status_url", "result_url", "created_at", "outcome")
    )

    outcome: Annotated[
        str | None,
        WithJsonSchema({"type": "string", "enum": list(CANCEL_OUTCOMES)}),
    ] = None


class RequestPage(_Answer):
    """One page of ``GET /v1/requests``: newest first; ``next_cursor`` fetches the next page
    (None on the last one)."""

    model_config = ConfigDict(json_schema_extra=_always_sent("requests", "next_cursor"))

    requests: list[RequestStatus] = Field(
        default_factory=list,
        description="Newest first; each is the body `GET /v1/requests/{id}/status` answers.",
    )
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last page."
    )
