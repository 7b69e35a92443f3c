"""Request ids in paths: one rule for what one looks like, for the routes and for the logs.

Every route whose path takes a request id declares it as :data:`RequestIdPath`, so a path with
anything but the ids this server hands out (UUIDs: letters, digits and hyphens) is a 422 before
the database sees it; PostgreSQL refuses a NUL in a text parameter with an error of its own,
which would otherwise be a 500.

Every log line written while the API handles a route about one request carries its id
(``framecast.logs``): ``/v1/requests/{id}/...`` from the path, a submit from the moment its id
is made (:func:`framecast.logs.bind_request_id` in the route)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator
from starlette.types import ASGIApp, Receive, Scope, Send

from framecast.api.errors import error_responses
from framecast.logs import request_id_var

_ID = r"[A-Za-z0-9-]{1,64}"
"""What a request id may be: wider than the UUIDs made here, narrow enough for any database
and any log line."""

_FULL_ID = re.compile(f"^{_ID}$")


def _checked_id(value: str) -> str:
    if not _FULL_ID.match(value):
        raise ValueError(
            "not a request id this server hands out (1 to 64 letters, digits and hyphens)"
        )
    return value


RequestIdPath = Annotated[
    str,
    Path(
        # The pattern is for the OpenAPI document; the check is _checked_id's, whose message
        # says what an id looks like rather than quoting a regular expression.
        json_schema_extra={"pattern": f"^{_ID}$"},
        description="The request_id submit answered (letters, digits and hyphens).",
    ),
    AfterValidator(_checked_id),
]

MALFORMED_ID = error_responses(
    {
        422: "The request id is not one this server could have handed out (`invalid_input`; "
        '`detail` names `["path", "request_id"]`).'
    }
)

_REQUEST_PATH = re.compile(rf"^/v1/requests/({_ID})(?:/|$)")


class RequestIdContext:
    """Pure ASGI middleware: sets the request id for the duration of one HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        match = _REQUEST_PATH.match(scope["path"])
        token = request_id_var.set(match.group(1) if match else None)
        await self.app(scope, receive, send)
        # Reset only after a normal answer: an exception goes on to the server's error handler,
        # outside this middleware, which logs it with the id still set. Each HTTP request runs
        # in a task of its own, so the value goes no further.
        request_id_var.reset(token)
