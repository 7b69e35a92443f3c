"""Caps on open waits: status streams and ``Prefer: wait`` answers count together against
FRAMECAST_MAX_STREAMS_PER_KEY and FRAMECAST_MAX_STREAMS; past either, a 429 with Retry-After in
the error shape. A slot comes back when its stream ends or its client goes away (in-process by
cancelling the client, and over a real socket closed by the client)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from framecast.api.services import Services

from .inprocess import (
    KEY,
    OTHER_KEY,
    SMALL,
    SUBMIT,
    assert_error,
    client_for,
    make_app,
    services_of,
    submit,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return make_app(tmp_path, poll_seconds=0.05, max_streams_per_key=2, max_streams=3)


def owner(services: Services, key: str) -> str:
    found = services.keys.owner_for(key)
    assert found is not None
    return found


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(30):
        while not condition():
            await anyio.sleep(0.01)


def refused(r: httpx.Response, code: str) -> None:
    body = assert_error(r, 429, code)
    assert r.headers["retry-after"] == "5"
    assert body["error"]["retry_after"] == 5


def stream(request_id: str) -> str:
    return f"/v1/requests/{request_id}/status/stream"


async def test_streams_and_waits_share_the_caps_and_free_their_slots(app: FastAPI) -> None:
    services = services_of(app)
    mine = owner(services, KEY)
    async with (
        client_for(app) as client,
        client_for(app, OTHER_KEY) as other,
        anyio.create_task_group() as tg,
    ):
        request_id = await submit(client)  # no worker: it stays queued, its waits open
        theirs = await submit(other)
        ended = await submit(client)
        assert (await client.post(f"/v1/requests/{ended}/cancel")).status_code == 200

        first = anyio.CancelScope()

        async def held(scope: anyio.CancelScope, call: Any) -> None:
            with scope:
                await call

        tg.start_soon(held, first, client.get(stream(request_id)))
        waiting = client.get(f"/v1/requests/{request_id}/status", headers={"Prefer": "wait=60"})
        tg.start_soon(held, anyio.CancelScope(), waiting)
        await until(lambda: services.waits.open(mine) == 2)

        # This key's cap: one more stream, wait or waiting submit is refused...
        refused(await client.get(stream(request_id)), "too_many_streams")
        prefer = {"Prefer": "wait=5"}
        refused(
            await client.get(f"/v1/requests/{request_id}/status", headers=prefer),
            "too_many_streams",
        )
        listed = len((await client.get("/v1/requests")).json()["requests"])
        body = {"prompt": "push in", **SMALL[SUBMIT]}
        refused(await client.post(SUBMIT, json=body, headers=prefer), "too_many_streams")
        # ...before the request is made: a retry makes no duplicate.
        assert len((await client.get("/v1/requests")).json()["requests"]) == listed
        # What does not wait is never refused: polling, an ended request's stream or wait.
        assert (await client.get(f"/v1/requests/{request_id}/status")).status_code == 200
        r = await client.get(f"/v1/requests/{ended}/status", headers=prefer)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        r = await client.get(stream(ended))
        assert r.status_code == 200 and '"status":"cancelled"' in r.text

        # The process's cap: the other key has one stream left of the three.
        tg.start_soon(held, anyio.CancelScope(), other.get(stream(theirs)))
        await until(lambda: services.waits.open() == 3)
        refused(await other.get(stream(theirs)), "server_streams_full")

        # A client that goes away gives its slot back; the next stream gets it.
        first.cancel()
        await until(lambda: services.waits.open(mine) == 1)
        tg.start_soon(held, anyio.CancelScope(), client.get(stream(request_id)))
        await until(lambda: services.waits.open(mine) == 2)
        tg.cancel_scope.cancel()
    assert services.waits.open() == 0
    assert services.watch.followed == 0


async def test_a_stream_that_ends_gives_its_slot_back(app: FastAPI) -> None:
    services = services_of(app)
    async with client_for(app) as client:
        request_id = await submit(client)

        async def cancel_once_followed() -> None:
            await until(lambda: services.watch.followed == 1)
            await client.post(f"/v1/requests/{request_id}/cancel")

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_once_followed)
            r = await client.get(stream(request_id))
    assert r.status_code == 200
    last = json.loads(r.text.strip().splitlines()[-1].removeprefix("data: "))
    assert last["status"] == "cancelled"
    assert services.waits.open() == 0 and services.watch.followed == 0


# -- over a real socket ----------------------------------------------------------------------


@pytest.fixture
def served(app: FastAPI) -> Iterator[str]:
    """``app`` behind uvicorn on a loopback port, in a thread; its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(until, lambda: server.started)
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


async def test_a_client_that_hangs_up_frees_its_slot(app: FastAPI, served: str) -> None:
    services = services_of(app)
    mine = owner(services, KEY)
    headers = {"Authorization": f"Bearer {KEY}"}
    timeout = httpx.Timeout(10, read=60)
    async with httpx.AsyncClient(base_url=served, headers=headers, timeout=timeout) as client:
        request_id = await submit(client)
        async with (
            client.stream("GET", stream(request_id)) as one,
            client.stream("GET", stream(request_id)) as two,
        ):
            assert (one.status_code, two.status_code) == (200, 200)
            # Held: a half-read line iterator left to the collector is closed from a task of
            # its own, and the client's next request then stalled now and then (httpx's pool).
            lines = one.aiter_lines()
            assert (await anext(lines)) == "event: status"
            refused(await client.get(stream(request_id)), "too_many_streams")
            await one.aclose()  # the connection goes; the server notices, not a read
            await until(lambda: services.waits.open(mine) == 1)
            async with client.stream("GET", stream(request_id)) as three:
                assert three.status_code == 200
                assert two.status_code == 200
    await until(lambda: services.waits.open() == 0)
    await until(lambda: services.watch.followed == 0)
