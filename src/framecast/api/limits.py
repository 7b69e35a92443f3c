"""A cap on request bodies, enforced before a body is read whole."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framecast.api.errors import error_response

_MiB = 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body without a (truthful) Content-Length passes the cap.

    An HTTPException, so that FastAPI passes it on instead of calling it a malformed body, and
    the app's handler answers it like any other 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return (
        f"the request body is larger than this server's limit of {limit / _MiB:,.1f} MiB "
        f"({limit:,} bytes); send a smaller image, or link to it with an http(s) URL "
        "instead of a data: URI."
    )


class BodySizeLimit:
    """Answers 413 at once for a declared Content-Length over ``limit``; for a body without one
    (chunked), counts the bytes as the app reads them and stops it at the first chunk over."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "request_too_large", too_large_message(self.limit))
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses those itself
    return None
