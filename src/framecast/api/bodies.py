"""JSON request bodies parsed without stalling the event loop.

A submit may carry its image as a ``data:`` URI: a 50 MB image is a 67 MB JSON body. Starlette
joins the body and ``json.loads`` it on the event loop (~35 ms and ~110 ms for 67 MB here),
and the GIL makes a thread no help for ``json.loads``: it holds the GIL for the whole parse.
So, for large bodies, :func:`parse_json` cuts each long string value out of the body, parses
what is left (small) and puts the strings back, doing the long work a few megabytes at a time
in a thread, so the event loop gets the GIL in between. What it returns is what ``json.loads``
returns; anything it does not recognise at once (escapes inside a long string, a body not in
UTF-8, invalid JSON) is left to ``json.loads`` itself, errors included.
"""

from __future__ import annotations

import codecs
import json
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

LARGE_BODY = 1024 * 1024
"""Bodies from this size are joined and parsed in a thread."""

LONG_STRING = 256 * 1024
"""String values from this length are cut out of the body before the rest is parsed."""

_PIECE = 4 * 1024 * 1024
"""How much one C call works through while holding the GIL (a few milliseconds)."""

_CONTROL = bytes(range(32))  # not allowed unescaped inside a JSON string
_WHITESPACE = b" \t\r\n"


def parse_json(body: bytes) -> Any:
    """``json.loads(body)``, with long strings handled a piece at a time (see the module)."""
    try:
        fast = _parse_cutting_long_strings(body)
    except Exception:  # whatever json.loads makes of it, errors included, is the answer
        fast = None
    return json.loads(body) if fast is None else fast[0]


def _parse_cutting_long_strings(body: bytes) -> tuple[Any] | None:
    """The parsed body in a 1-tuple, or None where the plain parse must decide."""
    start = len(body) - len(body.lstrip(_WHITESPACE))
    if body[start : start + 1] not in (b"{", b"["):
        return None  # a BOM, UTF-16/32, or not a container: json.loads detects and decides
    spans = _long_string_spans(body)
    if not spans:
        return None
    marker = "\x00framecast-" + secrets.token_hex(8) + "-"
    strings: dict[str, str] = {}
    parts: list[bytes] = []
    at = 0
    for i, (first, end) in enumerate(spans):
        text = _decode_string(body, first, end)
        if text is None:
            return None
        key = f"{marker}{i}"
        strings[key] = text
        parts += [body[at:first], json.dumps(key).encode()[1:-1]]
        at = end
    parts.append(body[at:])
    value = json.loads(b"".join(parts))
    restored = _restore(value, strings)
    return None if strings else (restored,)  # a marker not found where a value is: not ours


def _long_string_spans(body: bytes) -> list[tuple[int, int]]:
    """(first, end) of the contents of every string longer than LONG_STRING: outside strings
    JSON has no quote, so pairing quotes in order, skipping escaped ones, finds every string."""
    spans: list[tuple[int, int]] = []
    at = 0
    while (opening := body.find(b'"', at)) != -1:
        closing = opening
        while True:
            closing = body.find(b'"', closing + 1)
            if closing == -1:
                return spans  # unterminated: json.loads will say so
            before = closing - 1
            while body[before] == 0x5C:  # a backslash: odd runs escape the quote
                before -= 1
            if (closing - 1 - before) % 2 == 0:
                break
        if closing - opening - 1 >= LONG_STRING:
            spans.append((opening + 1, closing))
        at = closing + 1
    return spans


def _decode_string(body: bytes, first: int, end: int) -> str | None:
    """The string value body[first:end], or None if it has escapes (json.loads must read
    those) or characters JSON forbids there (json.loads must refuse them)."""
    for at in range(first, end, _PIECE):
        piece = body[at : min(at + _PIECE, end)]
        if b"\\" in piece or len(piece.translate(None, _CONTROL)) != len(piece):
            return None
    # One call, from a view (no copy of the slice): pieces joined after would hold the string
    # twice at the peak. ASCII, as base64 is, decodes at memory speed (~20 ms for 67 MB).
    text, _ = codecs.utf_8_decode(memoryview(body)[first:end], "surrogatepass", True)
    return text


def _restore(value: Any, strings: dict[str, str]) -> Any:
    """``value`` with each marker string replaced by its long string, removed from ``strings``."""
    if isinstance(value, str):
        return strings.pop(value, value)
    if isinstance(value, list):
        return [_restore(item, strings) for item in value]
    if isinstance(value, dict):
        # A long string used as a key stays a marker and in ``strings``: the caller falls back.
        return {key: _restore(item, strings) for key, item in value.items()}
    return value


class OffLoopJSONRequest(Request):
    """A request whose large JSON body is joined and parsed in a thread (see the module), in
    the threads that decode images (FRAMECAST_DECODE_CONCURRENCY): on a machine with few cores,
    more threads at once would leave the event loop waiting for the GIL between them."""

    def _limiter(self) -> anyio.CapacityLimiter | None:
        services = getattr(self.app.state, "services", None)
        limiter = getattr(services, "decode_limiter", None)
        return limiter if isinstance(limiter, anyio.CapacityLimiter) else None

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            chunks = [chunk async for chunk in self.stream()]
            size = sum(map(len, chunks))
            self._body = (
                await anyio.to_thread.run_sync(b"".join, chunks, limiter=self._limiter())
                if size >= LARGE_BODY
                else b"".join(chunks)
            )
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = (
                await anyio.to_thread.run_sync(parse_json, body, limiter=self._limiter())
                if len(body) >= LARGE_BODY
                else json.loads(body)
            )
        return self._json


class OffLoopJSONRoute(APIRoute):
    """A route whose JSON body is read as :class:`OffLoopJSONRequest` reads it (submit routes,
    whose bodies may carry a whole image)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def off_loop_handler(request: Request) -> Response:
            return await handler(OffLoopJSONRequest(request.scope, request.receive))

        return off_loop_handler
