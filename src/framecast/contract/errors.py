"""The error body every 4xx and 5xx answer has, and every code it (or a failed request's
``error``) can carry.

``{"error": {"code", "message", ...}}``, with RunComfy's fields beside it (``error_code``,
``error_message``, ``detail`` on a 422) so that RunComfy's clients read framecast's errors as
they read RunComfy's. Built by :func:`framecast.api.errors.error_response`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

MAX_LISTED_PROBLEMS = 20
"""A 422 lists at most this many problems and says how many more there were."""


class ErrorCode(StrEnum):
    """Every ``error.code`` framecast sends: stable and machine-readable. A client may branch
    on these; a new one is added here (``FramecastError`` takes only these, so mypy finds a
    code that is not)."""

    # Any request.
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    HTTP_ERROR = "http_error"
    """Any other HTTP error status the framework answers."""
    INVALID_HOST = "invalid_host"
    INTERNAL_ERROR = "internal_error"
    # Bodies (api/limits.py).
    REQUEST_TIMEOUT = "request_timeout"
    REQUEST_TOO_LARGE = "request_too_large"
    SERVER_BUSY = "server_busy"
    TOO_MANY_BODIES_IN_FLIGHT = "too_many_bodies_in_flight"
    # Submit: the input and its image.
    INVALID_INPUT = "invalid_input"
    MODEL_NOT_FOUND = "model_not_found"
    IMAGE_URL_INVALID = "image_url_invalid"
    IMAGE_URL_REFUSED = "image_url_refused"
    IMAGE_URL_UNSUPPORTED_SCHEME = "image_url_unsupported_scheme"
    IMAGE_FETCH_FAILED = "image_fetch_failed"
    IMAGE_FETCH_TIMEOUT = "image_fetch_timeout"
    IMAGE_FETCH_TOO_MANY_REDIRECTS = "image_fetch_too_many_redirects"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_TOO_LARGE_TO_DECODE = "image_too_large_to_decode"
    IMAGE_TOO_MANY_PIXELS = "image_too_many_pixels"
    IMAGE_TRUNCATED = "image_truncated"
    IMAGE_NOT_DECODABLE = "image_not_decodable"
    WEBHOOK_URL_MISSING = "webhook_url_missing"
    WEBHOOK_URL_INVALID = "webhook_url_invalid"
    WEBHOOK_URL_REFUSED = "webhook_url_refused"
    WEBHOOK_URL_UNSUPPORTED_SCHEME = "webhook_url_unsupported_scheme"
    WEBHOOK_SECRET_MISSING = "webhook_secret_missing"  # noqa: S105 (a code, not a secret)
    # Submit: admission.
    RATE_LIMITED = "rate_limited"
    TOO_MANY_ACTIVE_REQUESTS = "too_many_active_requests"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_KEY_IN_PROGRESS = "idempotency_key_in_progress"
    NO_WORKER_FOR_MODEL = "no_worker_for_model"
    # OpenAI's videos API (/v1/videos).
    MISSING_INPUT_REFERENCE = "missing_input_reference"
    VIDEO_NOT_READY = "video_not_ready"
    VIDEO_EXPIRED = "video_expired"
    # A request after submit.
    REQUEST_NOT_FOUND = "request_not_found"
    REQUEST_ALREADY_FINISHED = "request_already_finished"
    TOO_MANY_STREAMS = "too_many_streams"
    SERVER_STREAMS_FULL = "server_streams_full"
    TOO_MANY_REQUESTS = "too_many_requests"
    # Files behind signed links.
    LINK_EXPIRED = "link_expired"
    INVALID_SIGNATURE = "invalid_signature"
    FILE_NOT_FOUND = "file_not_found"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    # Health.
    DATABASE_UNREACHABLE = "database_unreachable"
    NO_READY_WORKER = "no_ready_worker"
    # A failed request's error.code (the worker and its engine).
    FAILED = "failed"
    """A failure recorded without a code."""
    ENGINE_ERROR = "engine_error"
    ENGINE_UNAVAILABLE = "engine_unavailable"
    WEIGHTS_UNAVAILABLE = "weights_unavailable"
    OUT_OF_MEMORY = "out_of_memory"
    INPUT_MISSING = "input_missing"
    WORKER_ERROR = "worker_error"
    EXPIRED = "expired"
    """Cancelled by its start deadline (X-Fal-Request-Timeout) before it ran."""


class ValidationProblem(BaseModel):
    """One entry of RunComfy's (and FastAPI's) 422 ``detail`` array."""

    loc: list[str | int] = Field(description='Where: ["body", "loras", 0, "scale"].')
    msg: str
    type: str = Field(description="pydantic's error type, or framecast's error code.")


class FieldProblem(BaseModel):
    field: str = Field(description="The input field, dotted for nested ones (loras.0.scale).")
    message: str
    allowed: str | list[str] | None = Field(
        None, description="For enums: the values accepted; for loras.N.path: the LoRA names."
    )


class ErrorDetail(BaseModel):
    # extra="allow": some codes carry more beside code and message, and clients should keep them.
    model_config = ConfigDict(extra="allow")

    code: ErrorCode = Field(description="Stable and machine-readable; branch on it.")
    message: str = Field(description="What went wrong and what to do about it, for a person.")
    details: list[FieldProblem] | None = Field(
        None,
        description=f"invalid_input from body validation: one entry per field, at most "
        f"{MAX_LISTED_PROBLEMS}.",
    )
    details_omitted: int | None = Field(
        None, description="invalid_input: how many more problems there were than listed."
    )


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer. request_already_finished adds the request's state as
    ``error.request`` (and ``outcome: "not_cancellable"``, as RunComfy's cancel answer);
    no_ready_worker adds the live workers as ``error.workers``. ``error_code``,
    ``error_message`` and ``detail`` are RunComfy's fields, for its clients; an answer without
    ``error_code`` is never an error."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail
    error_code: int = Field(
        description="RunComfy's numeric code: 400001 bad request or unknown model, 401001 "
        "unauthorized, 403001 forbidden, 404001 not found, 422001 invalid input, 500001 "
        "internal; other statuses the status * 1000 + 1 (409001, 413001, 503001, ...).",
        examples=[404001],
    )
    error_message: str = Field(description="The same text as error.message.")
    detail: list[ValidationProblem] | None = Field(
        None, description="Every 422: the problems, as RunComfy's 422001 lists them."
    )
