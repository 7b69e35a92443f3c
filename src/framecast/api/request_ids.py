"""Every log line written while the API handles a route about one request carries its id
(``framecast.logs``): ``/v1/requests/{id}/...`` from the path, a submit from the moment its id
is made (:func:`framecast.logs.bind_request_id` in the route)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from framecast.logs import request_id_var

_REQUEST_PATH = re.compile(r"^/v1/requests/([A-Za-z0-9-]{1,64})(?:/|$)")


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
