"""Guards on request bodies, enforced before and while a body is read: who may send one (a valid
API key, checked from the headers), each body's size, the bytes of all the bodies the API holds
at once and of one key's bodies, and how slowly a body may arrive.

The order matters. A request with a body is answered 401 before anything is reserved or read
when its key is missing or wrong: the budget is only ever held for a known key, so connections
without one cannot fill it (they did: three of them, trickling a byte every 2 s, held the whole
budget for as long as they liked). A key then holds at most its share of the budget, and a body
that arrives more slowly than the minimum rate, or not within the deadline, is cut off with a
408 and its reservation released at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import NoReturn

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framecast.api.auth import AUTHENTICATED_OWNER
from framecast.api.errors import error_response
from framecast.contract.errors import ErrorCode
from framecast.errors import FramecastError

log = logging.getLogger("framecast.api")

_MiB = 1024 * 1024

BUDGET_WAIT_SECONDS = 30.0
"""How long a request waits for room in the in-flight body budget before it is answered 503."""
RETRY_AFTER_SECONDS = 5

MIN_RATE_GRACE_SECONDS = 10.0
"""Time a body gets before the minimum rate applies: for the first bytes to arrive (a client
that sent ``Expect: 100-continue`` waits for our go first) and TCP's slow start."""

CLOSE = {"Connection": "close"}
"""On every answer given before the body is read whole (401, 408, 413, 429, 503): uvicorn would
otherwise read the rest of the body, to throw it away, at whatever pace the client sends it,
and keep the connection open for as long as that takes."""

Authenticate = Callable[[str], str]
"""The owner id for an ``Authorization`` header's value; raises a 401 FramecastError when the key
is missing or unknown. It may read the database, so it is run in a thread."""


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body without a (truthful) Content-Length passes the cap.

    An HTTPException, so that FastAPI passes it on instead of calling it a malformed body, and
    the app's handler answers it like any other 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit), headers=CLOSE)


class BodyTooSlow(HTTPException):
    """Raised from ``receive`` when a body falls behind its minimum rate or its deadline: the
    app's handler answers it 408 ``request_timeout``, and the connection is closed."""

    def __init__(self, message: str) -> None:
        super().__init__(408, message, headers=CLOSE)


def too_large_message(limit: int) -> str:
    return (
        f"the request body is larger than this server's limit of {limit / _MiB:,.1f} MiB "
        f"({limit:,} bytes); send a smaller image, or link to it with an http(s) URL "
        "instead of a data: URI."
    )


@dataclass(frozen=True)
class BodyTiming:
    """How slowly a body may arrive. Only the time spent waiting for the client's bytes counts
    (not the app's own work between reads), and only until the body is complete.

    At any moment the body may have waited at most ``grace_seconds + received /
    min_bytes_per_second``, and never more than ``timeout_seconds`` in all: each byte that
    arrives buys time, so an honest link that stalls for a while after a good start keeps going,
    while one that trickles (a byte every 2 s) is cut off once the grace is spent."""

    timeout_seconds: float
    min_bytes_per_second: float
    grace_seconds: float = MIN_RATE_GRACE_SECONDS

    def allowed(self, received: int) -> tuple[float, str]:
        """The seconds a body that has ``received`` bytes may have waited, and which limit
        sets it (``min_rate`` or ``deadline``)."""
        by_rate = self.grace_seconds + received / self.min_bytes_per_second
        if by_rate < self.timeout_seconds:
            return by_rate, "min_rate"
        return self.timeout_seconds, "deadline"


class NoRoom(Enum):
    """Why a reservation found no room in time."""

    SERVER = "server"
    """The whole budget is held (by other keys' bodies)."""
    KEY = "key"
    """The key's own bodies hold its share."""


@dataclass
class Reservation:
    """Bytes of a :class:`BodyBudget` one request holds; :meth:`release` gives them back, once."""

    budget: BodyBudget
    size: int
    owner: str | None
    released: bool = field(default=False)

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self.budget._release(self)


class BodyBudget:
    """Bytes of request bodies the API may hold at once. A body costs several times its size
    while it is handled (the raw bytes, the parsed JSON string, the decoded image), so a few
    large ones at once, each under the size cap, could otherwise take the API's memory.

    ``share``: the most one owner (an API key) may hold at once, so that one key cannot starve
    the others. An owner holding nothing may always reserve one body, whatever its size (else a
    share below the body cap would refuse that key's largest bodies for good)."""

    def __init__(self, limit: int, share: int | None = None) -> None:
        self.limit = limit
        self.share = limit if share is None else min(share, limit)
        self.reserved = 0
        self.by_owner: dict[str, int] = {}
        self._changed = asyncio.Condition()

    def _owner_fits(self, size: int, owner: str | None) -> bool:
        held = self.by_owner.get(owner, 0) if owner is not None else 0
        return held == 0 or held + size <= self.share

    def _fits(self, size: int, owner: str | None) -> bool:
        return self.reserved + size <= self.limit and self._owner_fits(size, owner)

    async def reserve(
        self, size: int, wait_seconds: float, owner: str | None = None
    ) -> Reservation | NoRoom:
        """Reserve ``size`` bytes (at most the whole budget) for ``owner``, waiting up to
        ``wait_seconds`` for room; the reservation, or why no room came."""
        size = min(size, self.limit)
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._fits(size, owner)), wait_seconds
                )
            except TimeoutError:
                return NoRoom.SERVER if self._owner_fits(size, owner) else NoRoom.KEY
            self.reserved += size
            if owner is not None:
                self.by_owner[owner] = self.by_owner.get(owner, 0) + size
            return Reservation(self, size, owner)

    async def _release(self, held: Reservation) -> None:
        async with self._changed:
            self.reserved -= held.size
            if held.owner is not None:
                left = self.by_owner.pop(held.owner) - held.size
                if left:
                    self.by_owner[held.owner] = left
            self._changed.notify_all()


class BodySizeLimit:
    """The guard on request bodies, as pure ASGI middleware (see the module).

    For a request with a body (a Content-Length above 0, or chunked), in this order:

    - with ``authenticate``, the key in its ``Authorization`` header must be valid, or it is a
      401 before its body is read; the owner goes into the scope's state for the route;
    - a declared Content-Length over ``limit`` is a 413 at once; a body without one (chunked)
      is counted as the app reads it and stopped at the first chunk over;
    - with ``inflight_limit``, it reserves its Content-Length (``limit`` when chunked) in a
      :class:`BodyBudget` (a key at most ``key_share`` of it), before any of it is read, and
      holds it until the request ends; one that finds no room within ``wait_seconds`` is a 503
      (the budget is full) or a 429 (the key's own bodies fill its share);
    - with ``timing``, a body that arrives too slowly is a 408 (see :class:`BodyTiming`), its
      reservation released at once; ``on_slow_body`` is told which limit cut it off.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        inflight_limit: int | None = None,
        wait_seconds: float = BUDGET_WAIT_SECONDS,
        *,
        key_share: int | None = None,
        authenticate: Authenticate | None = None,
        timing: BodyTiming | None = None,
        on_slow_body: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.budget = BodyBudget(inflight_limit, key_share) if inflight_limit is not None else None
        self.wait_seconds = wait_seconds
        self.authenticate = authenticate
        self.timing = timing
        self.on_slow_body = on_slow_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        cost = _body_cost(scope, declared, self.limit)
        owner: str | None = None
        if cost and self.authenticate is not None:
            try:
                owner = await anyio.to_thread.run_sync(
                    self.authenticate, _header(scope, b"authorization")
                )
            except FramecastError as exc:
                await error_response(exc.status, exc.code, exc.message, CLOSE)(scope, receive, send)
                return
            except Exception:  # the database down: the error shape, as the route would answer
                log.exception("checking the API key of %s %s", scope["method"], scope["path"])
                message = (
                    "the server hit an unexpected error; it has been logged. Try again, and "
                    "report it if it persists."
                )
                await error_response(500, ErrorCode.INTERNAL_ERROR, message, CLOSE)(
                    scope, receive, send
                )
                return
            scope.setdefault("state", {})[AUTHENTICATED_OWNER] = owner
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        timing = self.timing if cost else None  # no body: nothing to time
        if self.budget is None or cost == 0:
            await self._limited(scope, receive, send, None, timing)
            return
        held = await self.budget.reserve(cost, self.wait_seconds, owner)
        if held is NoRoom.KEY:
            await self._key_busy(self.budget, owner or "", scope, receive, send)
            return
        if isinstance(held, NoRoom):
            await self._busy(self.budget.limit, scope, receive, send)
            return
        try:
            await self._limited(scope, receive, send, held, timing)
        finally:
            await held.release()

    async def _limited(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        held: Reservation | None,
        timing: BodyTiming | None,
    ) -> None:
        received = 0
        waited = 0.0
        complete = False
        started = False
        loop = asyncio.get_running_loop()

        async def timed(timing: BodyTiming) -> Message:
            # Times only this wait for the client's bytes: the app's own work does not count.
            nonlocal waited
            allowed, limit = timing.allowed(received)
            begun = loop.time()
            try:
                if allowed - waited > 0:
                    async with asyncio.timeout(allowed - waited):
                        return await receive()
            except TimeoutError:
                pass
            finally:
                waited += loop.time() - begun
            await self._cut(held, limit, received, waited, timing)

        async def guarded_receive() -> Message:
            nonlocal received, complete
            if complete or timing is None:
                message = await receive()  # after the body: a disconnect, waited for at leisure
            else:
                message = await timed(timing)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, watching_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)
        except BodyTooSlow as exc:
            if started:
                raise
            await error_response(408, ErrorCode.REQUEST_TIMEOUT, exc.detail, CLOSE)(
                scope, receive, send
            )

    async def _cut(
        self,
        held: Reservation | None,
        limit: str,
        received: int,
        waited: float,
        timing: BodyTiming,
    ) -> NoReturn:
        """Cut a slow body off: count it, give its reservation back now (not once the app has
        answered), and raise the 408."""
        if self.on_slow_body is not None:
            self.on_slow_body(limit)
        if held is not None:
            await held.release()
        if limit == "deadline":
            why = (
                f"the whole body must arrive within {timing.timeout_seconds:,.0f} s "
                "(FRAMECAST_BODY_TIMEOUT_SECONDS)"
            )
        else:
            why = (
                f"after the first {timing.grace_seconds:,.0f} s a body must arrive at "
                f"{timing.min_bytes_per_second:,.0f} bytes per second or more "
                "(FRAMECAST_BODY_MIN_BYTES_PER_SECOND)"
            )
        raise BodyTooSlow(
            f"the request body arrived too slowly: {received:,} bytes in {waited:,.1f} s; "
            f"{why}. Send it again on a faster link, or link to the image with an http(s) URL "
            "instead of a data: URI."
        )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, ErrorCode.REQUEST_TOO_LARGE, too_large_message(self.limit), CLOSE
        )
        await response(scope, receive, send)

    async def _busy(self, budget: int, scope: Scope, receive: Receive, send: Send) -> None:
        message = (
            f"the server is busy receiving other large request bodies (more than "
            f"{budget / _MiB:,.0f} MiB at once, FRAMECAST_MAX_INFLIGHT_BODY_BYTES); "
            f"retry in {RETRY_AFTER_SECONDS} seconds, or link to the image with an http(s) URL "
            "instead of a data: URI."
        )
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS), **CLOSE}
        await error_response(503, ErrorCode.SERVER_BUSY, message, retry)(scope, receive, send)

    async def _key_busy(
        self, budget: BodyBudget, owner: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        message = (
            f"this API key is already sending {budget.by_owner.get(owner, 0) / _MiB:,.1f} MiB "
            f"of request bodies, and may send at most {budget.share / _MiB:,.0f} MiB at once "
            f"(FRAMECAST_MAX_INFLIGHT_BODY_BYTES_PER_KEY); retry in {RETRY_AFTER_SECONDS} "
            "seconds, once one of them is answered, or link to the image with an http(s) URL "
            "instead of a data: URI."
        )
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS), **CLOSE}
        await error_response(429, ErrorCode.TOO_MANY_BODIES_IN_FLIGHT, message, retry)(
            scope, receive, send
        )


def _body_cost(scope: Scope, declared: int | None, limit: int) -> int:
    """The bytes a request's body may take: its Content-Length, the cap for a chunked one."""
    if declared is not None:
        return declared
    chunked = any(
        name == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in scope.get("headers", ())
    )
    return limit if chunked else 0


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value).decode("latin-1")
    return ""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses those itself
    return None
