"""The body guard (framecast.api.limits): requests whose bodies together pass the in-flight
budget wait for room before their bodies are read, one that waits too long is answered 503 in
the error shape with Retry-After, and a request's share comes back however it ended; a key holds
at most its share, a body needs a key before it is read, and a body that arrives too slowly is
a 408 whose room is freed at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from framecast.api.limits import BodySizeLimit, BodyTiming
from framecast.contract.errors import ErrorCode
from framecast.errors import FramecastError

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
    deadline = time.monotonic() + 60  # a hang guard: the wait ends when the check holds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {condition}")
        await asyncio.sleep(0.01)


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


# --- keys, shares and slow bodies --------------------------------------------------------------


def owners(header: str) -> str:
    """A stand-in for the key check: ``Bearer NAME`` is NAME's; anything else is a 401."""
    scheme, _, name = header.partition(" ")
    if scheme != "Bearer" or not name:
        raise FramecastError("missing API key", code=ErrorCode.UNAUTHORIZED, status=401)
    return name


def keyed(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


class Trickle:
    """A request body the test sends by hand: each chunk put in ``chunks``, then None to end."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.chunks.get()) is not None:
            yield chunk


async def test_a_key_over_its_share_waits_and_is_then_a_429_while_other_keys_get_in() -> None:
    app = HeldApp()
    limits = BodySizeLimit(
        app, limit=CAP, inflight_limit=1000, wait_seconds=0.2, key_share=500, authenticate=owners
    )
    async with client(limits) as c:
        held = asyncio.create_task(c.post("/", content=b"a" * 400, headers=keyed("alice")))
        await until("alice's first body is read", lambda: app.read == [400])
        r = await c.post("/", content=b"b" * 200, headers=keyed("alice"))  # 600 > her 500
        body = assert_error(r, 429, "too_many_bodies_in_flight")
        assert r.headers["retry-after"] == "5"
        assert "FRAMECAST_MAX_INFLIGHT_BODY_BYTES_PER_KEY" in body["error"]["message"]
        # The budget itself has room: another key gets in at once.
        other = asyncio.create_task(c.post("/", content=b"c" * 500, headers=keyed("bob")))
        await until("bob's body is read", lambda: app.read == [400, 500])
        assert limits.budget is not None and limits.budget.by_owner == {"alice": 400, "bob": 500}
        app.release.set()
        assert [(await t).status_code for t in (held, other)] == [200, 200]
    assert limits.budget.reserved == 0 and limits.budget.by_owner == {}


async def test_a_key_holding_nothing_may_send_one_body_larger_than_its_share() -> None:
    app = HeldApp()
    app.release.set()
    limits = BodySizeLimit(
        app, limit=CAP, inflight_limit=1000, wait_seconds=0.2, key_share=100, authenticate=owners
    )
    async with client(limits) as c:
        r = await c.post("/", content=b"a" * 900, headers=keyed("alice"))
    assert r.status_code == 200 and r.text == "900"


async def test_no_key_is_a_401_before_the_body_is_read_and_a_failing_check_a_500() -> None:
    app = HeldApp()
    app.release.set()

    def broken(header: str) -> str:
        raise RuntimeError("the database is down")

    async with client(BodySizeLimit(app, limit=CAP, inflight_limit=1000, authenticate=owners)) as c:
        r = await c.post("/", content=b"a" * 10)
        assert_error(r, 401, "unauthorized")
        assert r.headers["connection"] == "close"
        assert (await c.get("/x")).status_code == 200  # no body: the route checks the key
    async with client(BodySizeLimit(app, limit=CAP, inflight_limit=1000, authenticate=broken)) as c:
        assert_error(
            await c.post("/", content=b"a" * 10, headers=keyed("a")), 500, "internal_error"
        )
    assert app.read == [0]  # the GET's empty body only


async def test_a_body_below_the_minimum_rate_is_cut_off_and_its_share_freed_at_once() -> None:
    app = HeldApp()
    cuts: list[str] = []
    limits = BodySizeLimit(
        app,
        limit=CAP,
        inflight_limit=1000,
        wait_seconds=10,
        timing=BodyTiming(timeout_seconds=60, min_bytes_per_second=100, grace_seconds=0.2),
        on_slow_body=cuts.append,
    )
    trickle = Trickle()
    budget = limits.budget
    assert budget is not None
    held_at_answers: list[tuple[int, int]] = []

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                held_at_answers.append((message["status"], budget.reserved))
            await send(message)

        await limits(scope, receive, watch)

    transport = httpx.ASGITransport(app=watched, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        slow = asyncio.create_task(c.post("/", content=trickle, headers={"Content-Length": "900"}))
        await until("the slow body holds its room", lambda: budget.reserved == 900)
        trickle.chunks.put_nowait(b"x" * 10)  # 10 bytes buy 0.1 s more; then nothing
        # Waits for the room the slow body holds: it is read once the cut frees it.
        waiting = asyncio.create_task(c.post("/", content=b"w" * 500))
        r = await slow
        app.release.set()
        assert (await waiting).status_code == 200
    body = assert_error(r, 408, "request_timeout")
    assert r.headers["connection"] == "close"
    assert "FRAMECAST_BODY_MIN_BYTES_PER_SECOND" in body["error"]["message"]
    assert cuts == ["min_rate"] and app.read == [500]
    # Its 900 bytes were given back before its 408 went out, not once the request ended.
    assert [room for status, room in held_at_answers if status == 408] in ([0], [500])
    assert budget.reserved == 0


async def test_a_body_that_keeps_the_minimum_rate_is_read_whole() -> None:
    app = HeldApp()
    app.release.set()
    cuts: list[str] = []
    limits = BodySizeLimit(
        app,
        limit=CAP,
        timing=BodyTiming(timeout_seconds=60, min_bytes_per_second=100, grace_seconds=0.2),
        on_slow_body=cuts.append,
    )
    trickle = Trickle()
    async with client(limits) as c:
        answer = asyncio.create_task(c.post("/", content=trickle))
        for _ in range(9):
            trickle.chunks.put_nowait(b"y" * 100)  # each chunk buys a whole second
            await asyncio.sleep(0.05)
        trickle.chunks.put_nowait(None)
        r = await answer
    assert r.status_code == 200 and r.text == "900" and cuts == []


def test_each_byte_buys_time_up_to_the_deadline() -> None:
    timing = BodyTiming(timeout_seconds=60, min_bytes_per_second=1000, grace_seconds=10)
    assert timing.allowed(0) == (10, "min_rate")
    assert timing.allowed(5_000) == (15, "min_rate")
    assert timing.allowed(10_000_000) == (60, "deadline")


def test_the_app_takes_the_guard_from_its_settings(tmp_path: Path) -> None:
    app = make_app(tmp_path, body_timeout_seconds=99, body_min_bytes_per_second=123)
    layer = app.build_middleware_stack()
    while not isinstance(layer, BodySizeLimit):
        layer = getattr(layer, "app")
    assert layer.timing == BodyTiming(99, 123)
    assert layer.authenticate is not None and layer.on_slow_body is not None
