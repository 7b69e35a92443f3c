"""Errors in OpenAI's shape on OpenAI's routes (``/v1/videos``).

Every error framecast answers has one shape (:mod:`framecast.api.errors`), made in many places:
route handlers, the body-size middleware's 401/413/429/503, the router's 404 and 405. Rather
than teach each of them a second shape, this middleware rewrites the finished error answer of
a ``/v1/videos`` route into OpenAI's ``{"error": {"message", "type", "code", "param"}}``, keeping
its status and headers (Retry-After, WWW-Authenticate): the ``openai`` SDK raises its exception
class by status (401 AuthenticationError, 404 NotFoundError, 429 RateLimitError, ...).

One status changes: a 422 (invalid input) becomes 400, as OpenAI answers an invalid parameter;
the SDK's BadRequestError is what its users catch for that.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v1/videos"

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(
        description="invalid_request_error, authentication_error, permission_error, "
        "rate_limit_error or server_error."
    )
    code: str | None = Field(description="framecast's error code, e.g. request_not_found.")
    param: str | None = Field(description="The parameter at fault, where one is.")


class OpenAIErrorBody(BaseModel):
    """Every error answer of ``/v1/videos``."""

    error: OpenAIErrorDetail


def openai_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a ``/v1/videos`` route: each status with OpenAI's error shape."""
    return {
        status: {"model": OpenAIErrorBody, "description": text}
        for status, text in descriptions.items()
    }


def openai_error(status: int, body: Any) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI-shaped body for framecast's error ``body`` answered with ``status``."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    status = 400 if status == 422 else status
    param = error.get("param")
    details = error.get("details")
    if param is None and isinstance(details, list) and details and isinstance(details[0], dict):
        param = details[0].get("field")
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return status, {
        "error": {
            "message": str(error.get("message") or "the request failed"),
            "type": kind,
            "code": error.get("code"),
            "param": param,
        }
    }


class OpenAIErrors:
    """Rewrites error answers (status 400 and up, JSON) under ``/v1/videos``; passes the rest."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                is_json = headers.get(b"content-type", b"").startswith(b"application/json")
                if message["status"] >= 400 and is_json:
                    start = message  # held until the body is complete
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_rewritten(send, start, b"".join(chunks))
                return
            await send(message)

        await self.app(scope, receive, rewrite)


async def _send_rewritten(send: Send, start: Message, raw: bytes) -> None:
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    status, body = openai_error(start["status"], parsed)
    content = json.dumps(body).encode()
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
