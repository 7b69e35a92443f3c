"""One error shape for every 4xx/5xx (:class:`~framecast.contract.errors.ErrorBody`):
``{"error": {"code", "message", ...}}``, with RunComfy's fields beside it (``error_code``,
``error_message``, ``detail`` on a 422) so that RunComfy's clients read framecast's errors as
they read RunComfy's."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from framecast.contract.errors import MAX_LISTED_PROBLEMS, ErrorBody, ErrorCode
from framecast.errors import FramecastError

log = logging.getLogger("framecast.api")

_MAX_SHOWN_CHARS = 80  # of a field name or value echoed back in a message

_HTTP_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,  # a body that arrived too slowly (api/limits.py)
    409: ErrorCode.CONFLICT,
    413: ErrorCode.REQUEST_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.INVALID_INPUT,
    429: ErrorCode.TOO_MANY_REQUESTS,
}

# RunComfy's numeric error_code (six digits: HTTP status, then a number within it) for each
# status framecast answers. Sources:
# - Model API error codes, https://docs.runcomfy.com/model-apis/error-codes :
#   400001 InvalidResourceIdentifier, 403001 PermissionDeniedError, 404001 ResourceNotFound
#   (also 400002 InsufficientResources and 400004 UserAccountError, for cases framecast lacks).
# - General error codes, https://docs.runcomfy.com/error-codes (= /serverless/error-codes):
#   401001 Unauthorized, 422001 Validation Error (with a "detail" array), 500001 Internal Error.
# Any other status has no RunComfy code; it gets the nearest class, status * 1000 + 1.
_RUNCOMFY_CODES = {
    400: 400001,  # model-apis/error-codes: InvalidResourceIdentifier (a malformed request)
    401: 401001,  # error-codes: Unauthorized (missing, invalid or revoked key)
    403: 403001,  # model-apis/error-codes: PermissionDeniedError (bad or expired signed link)
    404: 404001,  # model-apis/error-codes: ResourceNotFound (unknown or expired request_id)
    422: 422001,  # error-codes: Validation Error
    500: 500001,  # error-codes: Internal Error
}
_RUNCOMFY_CODES_BY_CODE: dict[str, int] = {
    # model-apis/error-codes: a wrong model_id is 400001 InvalidResourceIdentifier; framecast
    # keeps answering HTTP 404 for it (as before), with RunComfy's code.
    ErrorCode.MODEL_NOT_FOUND: 400001,
}


def runcomfy_error_code(status: int, code: str) -> int:
    """RunComfy's ``error_code`` for a framecast error (see the sources above)."""
    return _RUNCOMFY_CODES_BY_CODE.get(code) or _RUNCOMFY_CODES.get(status, status * 1000 + 1)


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
    status: int,
    code: ErrorCode,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    detail: Sequence[Mapping[str, Any]] | None = None,
    beside: Mapping[str, Any] | None = None,
    **details: Any,
) -> JSONResponse:
    """framecast's ``error`` object (``details`` go into it) and RunComfy's fields beside it.

    ``detail``: a 422's problems in RunComfy's shape (a 422 without them lists its message
    as one problem); ``beside``: more top-level fields, e.g. a cancel's ``outcome``."""
    body: dict[str, Any] = {
        "error": {"code": code, "message": message, **details},
        "error_code": runcomfy_error_code(status, code),
        "error_message": message,
    }
    if detail is not None:
        body["detail"] = list(detail)
    elif status == 422:
        body["detail"] = [{"loc": ["body"], "msg": message, "type": code}]
    return JSONResponse({**body, **(beside or {})}, status_code=status, headers=headers)


def _shorten(text: str) -> str:
    if len(text) <= _MAX_SHOWN_CHARS:
        return text
    return f"{text[: _MAX_SHOWN_CHARS - 20]}...({len(text):,} characters)"


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [_shorten(str(p)) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def validation_detail(errors: list[dict[str, Any]], messages: list[str]) -> list[dict[str, Any]]:
    """RunComfy's 422 ``detail``: pydantic's location and type, framecast's message."""
    return [
        {
            "loc": [p if isinstance(p, int) else _shorten(str(p)) for p in err.get("loc", ())],
            "msg": msg,
            "type": str(err.get("type", "value_error")),
        }
        for err, msg in zip(errors, messages, strict=False)
    ]


def invalid_json_message(err: Mapping[str, Any], document: object) -> str:
    """FastAPI's ``json_invalid`` error (its location ends with the parser's character offset,
    its context holds the parser's complaint) as what went wrong and where; ``document``: the
    text parsed, when known, for the line and column and to tell a body that was cut short."""
    position = next((p for p in reversed(err.get("loc", ())) if isinstance(p, int)), None)
    complaint = str(err.get("ctx", {}).get("error") or "invalid JSON")
    if position is None:
        return f"the body is not valid JSON: {complaint}"
    # json's "Unterminated string starting at" already ends with its "at".
    message = f"the body is not valid JSON: {complaint.removesuffix(' at')} at character {position}"
    if isinstance(document, str) and 0 <= position <= len(document):
        line = document.count("\n", 0, position) + 1
        column = position - document.rfind("\n", 0, position)
        message += f" (line {line}, column {column})"
        # json says "Unterminated string" where a string runs to the body's end.
        if not document[position:].strip() or complaint.startswith("Unterminated string"):
            message += "; the body ends before the JSON does: was it cut short?"
    return message


def describe_validation_errors(
    errors: list[dict[str, Any]],
    allowed_fields: list[str] | None = None,
    elsewhere: Mapping[str, list[str]] | None = None,
    limit: int = MAX_LISTED_PROBLEMS,
    document: object = None,
) -> list[dict[str, Any]]:
    """Turn pydantic's errors into messages that name the field and what it accepts; the first
    ``limit`` of them (the caller says how many more there were).

    ``elsewhere``: field -> the other models that take it, so a client that sent one model's
    fields to another hears which one it meant (``image_url`` is 1.0's, ``image`` 1.5's).
    The allowed fields are listed once, with the first unknown field. ``document``: the body
    as parsed, for where a body that is not JSON goes wrong.
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
        elif kind == "json_invalid":
            # Its location is the parser's offset, not a field.
            entry = {"field": "body", "message": invalid_json_message(err, document)}
        elif kind in {"model_attributes_type", "dict_type", "model_type"}:
            entry["message"] = "the body must be a JSON object"
            if isinstance(err.get("input"), bytes):  # FastAPI parses JSON by its media type only
                entry["message"] += " sent as Content-Type: application/json"
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
        return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        path = request.url.path
        allowed = fields.get(path)
        model = path.removeprefix("/v1/models/")
        elsewhere = {f: [m for m in ms if m != model] for f, ms in owners.items()}
        errors = exc.errors()
        details = describe_validation_errors(
            list(errors[:MAX_LISTED_PROBLEMS]), allowed, elsewhere, document=exc.body
        )
        message = "; ".join(d["message"] for d in details)
        detail = validation_detail(list(errors[: len(details)]), [d["message"] for d in details])
        omitted = len(errors) - len(details)
        if omitted <= 0:
            return error_response(
                422, ErrorCode.INVALID_INPUT, message, detail=detail, details=details
            )
        return error_response(
            422,
            ErrorCode.INVALID_INPUT,
            f"{message}; and {omitted:,} more problem{'s' * (omitted > 1)}, not listed",
            detail=detail,
            details=details,
            details_omitted=omitted,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(
            exc.status_code, code, message, headers=dict(exc.headers) if exc.headers else None
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500,
            ErrorCode.INTERNAL_ERROR,
            "the server hit an unexpected error; it has been logged. Try again, and report it if it persists.",
        )
