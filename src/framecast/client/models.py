"""Typed answers of the API, as framecast and RunComfy send them.

Every model keeps fields it does not know (``extra="allow"``): RunComfy and newer framecast
servers add fields, and a client must not break on them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

SUCCEEDED = frozenset({"completed", "succeeded"})
"""Statuses that mean the video is ready (RunComfy and framecast say ``completed``)."""

TERMINAL = SUCCEEDED | frozenset({"failed", "error", "cancelled", "canceled"})
"""Statuses after which nothing changes any more; polling stops at them."""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Submitted(_Answer):
    """The answer to a submit: the request's id and where to follow it."""

    request_id: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None


class JobError(_Answer):
    """Why a request failed (a ``failed`` status carries it)."""

    code: str = "failed"
    message: str = "the request failed"


class RequestStatus(_Answer):
    """A request's state, as ``GET /v1/requests/{id}/status`` answers it (and as the status
    stream sends it). Which fields are set depends on ``status``: ``queue_position`` while
    ``in_queue``; ``progress``, ``phase``, ``step`` and ``total_steps`` while ``in_progress``;
    ``error`` when ``failed``."""

    request_id: str
    status: str
    queue_position: int | None = None
    progress: float | None = None
    phase: str | None = None
    step: int | None = None
    total_steps: int | None = None
    attempt: int | None = None
    cancel_requested: bool | None = None
    note: str | None = None
    error: JobError | None = None
    status_url: str | None = None
    result_url: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED


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
    """``GET /v1/requests/{id}/result``: the outputs when ``succeeded``; before that the same
    fields as a status, so it can be polled."""

    output: Output | None = None
    poster: str | None = None
    links_expire_at: str | None = None
    metadata: dict[str, JsonValue] | None = None
    input: dict[str, JsonValue] | None = None

    @property
    def video_url(self) -> str | None:
        return self.output.video_url if self.output is not None else None


class CancelResult(RequestStatus):
    """The answer to a cancel. ``outcome``: ``cancelled`` (it was queued and never runs),
    ``cancel_requested`` (framecast: it was running and stops at its next step) or
    ``not_cancellable`` (it had already finished, or RunComfy does not cancel running ones)."""

    outcome: Literal["cancelled", "cancel_requested", "not_cancellable"] | str | None = None


class RequestPage(_Answer):
    """One page of ``GET /v1/requests``: newest first; ``next_cursor`` fetches the next page
    (None on the last one)."""

    requests: list[RequestStatus] = Field(default_factory=list)
    next_cursor: str | None = None


class ModelCard(_Answer):
    """A model as ``GET /v1/models`` lists it (framecast only)."""

    id: str
    description: str | None = None
    image_field: str | None = None
    input_schema: dict[str, JsonValue] = Field(default_factory=dict)
