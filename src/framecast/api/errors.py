"""One error shape for every 4xx/5xx: ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from framecast.errors import FramecastError

log = logging.getLogger("framecast.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **details: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **details}},
        status_code=status,
        headers=headers,
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def describe_validation_errors(
    errors: list[dict[str, Any]], allowed_fields: list[str] | None = None
) -> list[dict[str, Any]]:
    """Turn pydantic's errors into messages that name the field and what it accepts."""
    out = []
    for err in errors:
        field = _field_name(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        entry: dict[str, Any] = {"field": field}
        if kind == "extra_forbidden":
            allowed = ", ".join(allowed_fields or [])
            entry["message"] = f"unknown field '{field}'" + (
                f"; allowed fields: {allowed}" if allowed else ""
            )
        elif kind == "missing":
            entry["message"] = f"{field} is required"
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            entry["message"] = f"{field} must be one of {expected}; got {err.get('input')!r}"
            entry["allowed"] = expected
        elif kind in {"json_invalid", "model_attributes_type", "dict_type", "model_type"}:
            entry["message"] = "the body must be a JSON object"
        else:
            msg = err.get("msg", "invalid value").removeprefix("Value error, ")
            entry["message"] = f"{field}: {msg}"
        out.append(entry)
    return out


def install_error_handlers(app: FastAPI, allowed_fields: list[str]) -> None:
    @app.exception_handler(FramecastError)
    async def _framecast(_: Request, exc: FramecastError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, **exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = describe_validation_errors(list(exc.errors()), allowed_fields)
        message = "; ".join(d["message"] for d in details)
        return error_response(422, "invalid_input", message, details=details)

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
