"""Caps on request bodies, enforced before a body is read: each body's size, and the bytes of
all the bodies the API holds at once."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framecast.api.errors import error_response

_MiB = 1024 * 1024

BUDGET_WAIT_SECONDS = 30.0
"""How long a request waits for room in the in-flight body budget before it is answered 503."""
RETRY_AFTER_SECONDS = 5


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


class BodyBudget:
    """Bytes of request bodies the API may hold at once. A body costs several times its size
    while it is handled (the raw bytes, the parsed JSON string, the decoded image), so a few
    large ones at once, each under the size cap, could otherwise take the API's memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reserved = 0
        self._changed = asyncio.Condition()

    async def reserve(self, size: int, wait_seconds: float) -> int | None:
        """Reserve ``size`` bytes (at most the whole budget), waiting up to ``wait_seconds``
        for room; what was reserved, or None if no room came."""
        size = min(size, self.limit)
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.reserved + size <= self.limit),
                    wait_seconds,
                )
            except TimeoutError:
                return None
            self.reserved += size
            return size

    async def release(self, size: int) -> None:
        async with self._changed:
            self.reserved -= size
            self._changed.notify_all()


class BodySizeLimit:
    """Answers 413 at once for a declared Content-Length over ``limit``; for a body without one
    (chunked), counts the bytes as the app reads them and stops it at the first chunk over.

    With ``inflight_limit``, a request with a body first reserves its Content-Length (``limit``
    when chunked) in a :class:`BodyBudget`, before any of it is read, and holds it until the
    request ends; one that finds no room within ``wait_seconds`` is answered 503."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        inflight_limit: int | None = None,
        wait_seconds: float = BUDGET_WAIT_SECONDS,
    ) -> None:
        self.app = app
        self.limit = limit
        self.budget = BodyBudget(inflight_limit) if inflight_limit is not None else None
        self.wait_seconds = wait_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        cost = _body_cost(scope, declared, self.limit)
        if self.budget is None or cost == 0:
            await self._limited(scope, receive, send)
            return
        reserved = await self.budget.reserve(cost, self.wait_seconds)
        if reserved is None:
            await self._busy(self.budget.limit, scope, receive, send)
            return
        try:
            await self._limited(scope, receive, send)
        finally:
            await self.budget.release(reserved)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
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

    async def _busy(self, budget: int, scope: Scope, receive: Receive, send: Send) -> None:
        message = (
            f"the server is busy receiving other large request bodies (more than "
            f"{budget / _MiB:,.0f} MiB at once, FRAMECAST_MAX_INFLIGHT_BODY_BYTES); "
            f"retry in {RETRY_AFTER_SECONDS} seconds, or link to the image with an http(s) URL "
            "instead of a data: URI."
        )
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        await error_response(503, "server_busy", message, retry)(scope, receive, send)


def _body_cost(scope: Scope, declared: int | None, limit: int) -> int:
    """The bytes a request's body may take: its Content-Length, the cap for a chunked one."""
    if declared is not None:
        return declared
    chunked = any(
        name == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in scope.get("headers", ())
    )
    return limit if chunked else 0


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses those itself
    return None
