"""One error shape for every 4xx/5xx: ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from framecast.errors import FramecastError

log = logging.getLogger("framecast.api")

MAX_LISTED_PROBLEMS = 20
"""A 422 lists at most this many problems and says how many more there were."""

_MAX_SHOWN_CHARS = 80  # of a field name or value echoed back in a message

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


class FieldProblem(BaseModel):
    field: str = Field(description="The input field, dotted for nested ones (loras.0.scale).")
    message: str
    allowed: str | list[str] | None = Field(
        None, description="For enums: the values accepted; for loras.N.path: the LoRA names."
    )


class ErrorDetail(BaseModel):
    # extra="allow": some codes carry more beside code and message, and clients should keep them.
    model_config = ConfigDict(extra="allow")

    code: str = Field(
        description="Stable and machine-readable, e.g. unauthorized, invalid_input, "
        "image_fetch_failed, request_not_found, request_already_finished, link_expired."
    )
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
    ``error.request``; no_ready_worker adds the live workers as ``error.workers``."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route: each status it answers with the error shape."""
    return {status: {"model": ErrorBody, "description": d} for status, d in descriptions.items()}


def document_error_shape(app: FastAPI) -> None:
    """Drop the 422 FastAPI documents on every route with parameters, in its own shape: every
    422 here has the shape above, and routes that can answer one declare it themselves."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = generate()
        if first:
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    if "HTTPValidationError" in str(responses.get("422", "")):
                        del responses["422"]
                    # Routes merge shared error sets; list the statuses in order.
                    operation["responses"] = dict(sorted(responses.items()))
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **details: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **details}},
        status_code=status,
        headers=headers,
    )


def _shorten(text: str) -> str:
    if len(text) <= _MAX_SHOWN_CHARS:
        return text
    return f"{text[: _MAX_SHOWN_CHARS - 20]}...({len(text):,} characters)"


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [_shorten(str(p)) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def describe_validation_errors(
    errors: list[dict[str, Any]],
    allowed_fields: list[str] | None = None,
    elsewhere: Mapping[str, list[str]] | None = None,
    limit: int = MAX_LISTED_PROBLEMS,
) -> list[dict[str, Any]]:
    """Turn pydantic's errors into messages that name the field and what it accepts; the first
    ``limit`` of them (the caller says how many more there were).

    ``elsewhere``: field -> the other models that take it, so a client that sent one model's
    fields to another hears which one it meant (``image_url`` is 1.0's, ``image`` 1.5's).
    The allowed fields are listed once, with the first unknown field.
    """
    out = []
    allowed_told = False
    for err in errors[:limit]:
        field = _field_name(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        entry: dict[str, Any] = {"field": field}
        if kind == "extra_forbidden":
            allowed = "" if allowed_told else ", ".join(allowed_fields or [])
            allowed_told = True
            owners = (elsewhere or {}).get(field)
            entry["message"] = (
                f"unknown field '{field}'"
                + (f" (it is a field of {', '.join(owners)}, not of this model)" if owners else "")
                + (f"; allowed fields: {allowed}" if allowed else "")
            )
        elif kind == "missing":
            entry["message"] = f"{field} is required"
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            got = _shorten(repr(err.get("input")))
            entry["message"] = f"{field} must be one of {expected}; got {got}"
            entry["allowed"] = expected
        elif kind in {"json_invalid", "model_attributes_type", "dict_type", "model_type"}:
            entry["message"] = "the body must be a JSON object"
        else:
            msg = err.get("msg", "invalid value").removeprefix("Value error, ")
            entry["message"] = f"{field}: {msg}"
        out.append(entry)
    return out


def install_error_handlers(app: FastAPI, fields: Mapping[str, list[str]]) -> None:
    """``fields``: each submit route's path -> the input fields of its model."""
    owners: dict[str, list[str]] = {}
    for path, names in fields.items():
        for name in names:
            owners.setdefault(name, []).append(path.removeprefix("/v1/models/"))

    @app.exception_handler(FramecastError)
    async def _framecast(_: Request, exc: FramecastError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, **exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        path = request.url.path
        allowed = fields.get(path)
        model = path.removeprefix("/v1/models/")
        elsewhere = {f: [m for m in ms if m != model] for f, ms in owners.items()}
        errors = exc.errors()
        details = describe_validation_errors(list(errors[:MAX_LISTED_PROBLEMS]), allowed, elsewhere)
        message = "; ".join(d["message"] for d in details)
        omitted = len(errors) - len(details)
        if omitted <= 0:
            return error_response(422, "invalid_input", message, details=details)
        return error_response(
            422,
            "invalid_input",
            f"{message}; and {omitted:,} more problem{'s' * (omitted > 1)}, not listed",
            details=details,
            details_omitted=omitted,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(
            exc.status_code, code, message, headers=dict(exc.headers) if exc.headers else None
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500,
            "internal_error",
            "the server hit an unexpected error; it has been logged. Try again, and report it if it persists.",
        )
