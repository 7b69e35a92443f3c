"""The one exception the client raises, read from framecast's or RunComfy's error answers."""

from __future__ import annotations

import json

import httpx
from pydantic import JsonValue


class APIError(Exception):
    """An error answer, a request that failed or was cancelled, or a server out of reach.

    ``status_code``: the HTTP status (None when no answer came, or for a request that failed
    while running). ``error_code``: RunComfy's six-digit code (404001, 422001, ...), which
    framecast sends too. ``code``: framecast's own code (``request_not_found``,
    ``invalid_input``, a failed request's ``engine_error``, ``cancelled``, ``connection_error``).
    ``message``: text for a person. ``detail``: RunComfy's 422 problems
    (``[{"loc", "msg", "type"}]``). ``body``: the whole answer, as parsed.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: int | None = None,
        code: str | None = None,
        detail: JsonValue = None,
        request_id: str | None = None,
        body: JsonValue = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.code = code
        self.detail = detail
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        where = f"HTTP {self.status_code}" if self.status_code is not None else None
        tags = ", ".join(str(t) for t in (where, self.error_code, self.code) if t is not None)
        return f"{self.message} ({tags})" if tags else self.message


def _text(value: JsonValue) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None


def _error_code(value: JsonValue) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _detail_text(detail: JsonValue) -> str | None:
    """A 422 ``detail`` as one line: RunComfy's (and FastAPI's) ``[{"loc", "msg"}]``."""
    if isinstance(detail, str):
        return _text(detail)
    if not isinstance(detail, list):
        return None
    parts = []
    for item in detail:
        if isinstance(item, dict) and isinstance(item.get("msg"), str):
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else ""
            msg = str(item["msg"])
            parts.append(f"{where}: {msg}" if where and where not in msg else msg)
    return "; ".join(parts) or None


def is_error_answer(response: httpx.Response, body: JsonValue) -> bool:
    """RunComfy's clients treat any answer carrying ``error_code`` as an error; so does this."""
    return response.is_error or (isinstance(body, dict) and body.get("error_code") is not None)


def parse_body(response: httpx.Response) -> JsonValue:
    try:
        parsed: JsonValue = json.loads(response.content) if response.content else None
    except ValueError:
        return None
    return parsed


def error_from_response(response: httpx.Response, body: JsonValue) -> APIError:
    """Read framecast's ``{"error": {"code", "message"}}`` and RunComfy's ``error_code``,
    ``error_message`` (or ``message``) and ``detail``, whichever the answer has."""
    fields = body if isinstance(body, dict) else {}
    own = fields.get("error")
    own = own if isinstance(own, dict) else {}
    detail = fields.get("detail")
    message = (
        _text(fields.get("error_message"))
        or _text(own.get("message"))
        or _text(fields.get("message"))
        or _text(fields.get("error"))
        or _detail_text(detail)
        or _text(response.text[:300])
        or response.reason_phrase
        or f"HTTP {response.status_code}"
    )
    code = own.get("code")
    return APIError(
        message.strip(),
        status_code=response.status_code,
        error_code=_error_code(fields.get("error_code")),
        code=code if isinstance(code, str) else None,
        detail=detail,
        body=body,
    )


def connection_error(exc: httpx.TransportError, base_url: str) -> APIError:
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return APIError(
        f"the connection to {base_url} {what}: {exc or type(exc).__name__}; check the server "
        "URL (--server / FRAMECAST_SERVER) and that the server is running",
        code="connection_error",
    )
