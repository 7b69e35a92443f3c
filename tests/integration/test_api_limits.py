"""The in-flight body budget (framecast.api.limits): requests whose bodies together pass it wait
for room before their bodies are read, one that waits too long is answered 503 in the error
shape with Retry-After, and a request's share comes back however it ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from framecast.api.limits import BodySizeLimit

from .inprocess import assert_error, make_app

pytestmark = pytest.mark.anyio

CAP = 1000
"""The per-body cap of these tests' middleware."""


class HeldApp:
    """Reads its whole body, then holds the request open until ``release`` is set; fails
    instead for a body that starts with ``fail``."""

    def __init__(self) -> None:
        self.read: list[int] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.read.append(len(body))
        if body.startswith(b"fail"):
            raise RuntimeError("the app failed")
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def client(limits: BodySizeLimit) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=limits, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=10)


async def until(condition: str, check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {condition}")


async def test_bodies_over_the_budget_wait_for_room_and_are_then_served() -> None:
    app = HeldApp()
    limits = BodySizeLimit(app, limit=CAP, inflight_limit=1000, wait_seconds=10)
    async with client(limits) as c:
        first = asyncio.create_task(c.post("/", content=b"a" * 600))
        await until("the first body is read", lambda: app.read == [600])
        second = asyncio.create_task(c.post("/", content=b"b" * 600))
        small = asyncio.create_task(c.post("/", content=b"c" * 300))
        # 600 + 300 fit: the small one is read; 600 + 600 do not: the second one waits unread.
        await until("the small body is read", lambda: app.read == [600, 300])
        await asyncio.sleep(0.1)
        assert app.read == [600, 300] and limits.budget is not None
        assert limits.budget.reserved == 900
        app.release.set()
        answers = await asyncio.gather(first, second, small)
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert sorted(app.read) == [300, 600, 600]
    assert limits.budget.reserved == 0


async def test_a_request_that_finds_no_room_in_time_is_a_503_with_retry_after() -> None:
    app = HeldApp()
    limits = BodySizeLimit(app, limit=CAP, inflight_limit=1000, wait_seconds=0.2)
    async with client(limits) as c:
        held = asyncio.create_task(c.post("/", content=b"a" * 900))
        await until("the first body is read", lambda: app.read == [900])
        r = await c.post("/", content=b"b" * 200)
        body = assert_error(r, 503, "server_busy")
        assert r.headers["retry-after"] == "5"
        assert "FRAMECAST_MAX_INFLIGHT_BODY_BYTES" in body["error"]["message"]
        assert app.read == [900]  # refused before its body was read
        app.release.set()
        assert (await held).status_code == 200


async def test_a_chunked_body_reserves_the_whole_cap() -> None:
    app = HeldApp()
    limits = BodySizeLimit(app, limit=CAP, inflight_limit=1500, wait_seconds=0.2)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 10

    async with client(limits) as c:
        held = asyncio.create_task(c.post("/", content=chunks()))
        await until("the chunked body is read", lambda: app.read == [10])
        assert limits.budget is not None and limits.budget.reserved == CAP
        assert_error(await c.post("/", content=b"y" * 600), 503, "server_busy")
        app.release.set()
        assert (await held).status_code == 200
    assert limits.budget.reserved == 0


async def test_the_budget_comes_back_after_errors() -> None:
    app = HeldApp()
    app.release.set()
    limits = BodySizeLimit(app, limit=CAP, inflight_limit=1000, wait_seconds=0.2)

    async def too_long() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"z" * 400

    async with client(limits) as c:
        assert (await c.post("/", content=b"fail" + b"f" * 900)).status_code == 500
        assert_error(await c.post("/", content=too_long()), 413, "request_too_large")
        assert_error(await c.post("/", content=b"w" * (CAP + 1)), 413, "request_too_large")
        assert limits.budget is not None and limits.budget.reserved == 0
        r = await c.post("/", content=b"v" * 1000)  # the whole budget is free again
    assert r.status_code == 200 and r.text == "1000"


def test_the_app_takes_the_budget_from_its_setting(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_inflight_body_bytes=123_456_789)
    layer = app.build_middleware_stack()
    while not isinstance(layer, BodySizeLimit):
        layer = getattr(layer, "app")  # each middleware wraps the next
    assert layer.budget is not None and layer.budget.limit == 123_456_789
