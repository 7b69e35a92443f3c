"""The status stream and ``Prefer: wait`` in-process (the real app over httpx's ASGI transport,
a real preview worker in a thread). The ASGI transport hands over a response only once it has
ended, so these check what a stream says and that it ends; tests/acceptance/test_stream.py
checks its timing against a real server."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from framecast.api.routes import stream
from framecast.api.waiting import MAX_WAIT_S, parse_prefer_wait
from framecast.client.sse import EventDecoder
from framecast.engines.preview import PreviewEngine
from framecast.worker.loop import Worker

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

ORDER = {"in_queue": 0, "in_progress": 1, "completed": 2}


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return make_app(tmp_path, poll_seconds=0.02)


def run_worker(app: FastAPI) -> None:
    """One request to its end, a real preview worker with steps slow enough to be seen."""
    services = services_of(app)
    settings = services.settings.model_copy(update={"x264_preset": "ultrafast"})
    engine = PreviewEngine(step_seconds=0.08)
    Worker(settings, engines={spec.id: engine for spec in services.models}).run(max_jobs=1)


class FirstBody:
    """The app, noting when a response first sends body bytes (a stream: its first event)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.sent = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def noting(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                self.sent.set()
            await send(message)

        await self.app(scope, receive, noting)


def events_of(text: str) -> list[dict[str, Any]]:
    decoder = EventDecoder()
    bodies = []
    for line in text.splitlines():
        event = decoder.feed(line)
        if event is not None:
            assert event.event == "status"
            bodies.append(json.loads(event.data))
    return bodies


def test_prefer_wait_is_parsed_as_rfc_7240_and_capped() -> None:
    assert parse_prefer_wait("wait=5") == 5
    assert parse_prefer_wait("respond-async, wait=12; foo=bar") == 12
    assert parse_prefer_wait("wait") == MAX_WAIT_S
    assert parse_prefer_wait("wait=600") == MAX_WAIT_S
    assert parse_prefer_wait('wait="3"') == 3
    assert parse_prefer_wait("wait=soon") is None
    assert parse_prefer_wait("wait=-1") is None
    assert parse_prefer_wait("return=minimal") is None
    assert parse_prefer_wait(None) is None


async def test_the_stream_sends_each_state_in_order_and_ends_at_the_end(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    request_id = await submit(client, num_frames=9)
    watched = FirstBody(app)

    def work_once_the_stream_has_begun() -> None:
        # Event-based: a worker started beside the request could claim it first on a loaded
        # machine, and the stream would rightly begin at in_progress.
        assert watched.sent.wait(60), "the stream sent nothing"  # a hang guard
        run_worker(app)

    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=watched, raise_app_exceptions=False),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        ) as watching,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(anyio.to_thread.run_sync, work_once_the_stream_has_begun)
        r = await watching.get(f"/v1/requests/{request_id}/status/stream")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    events = events_of(r.text)
    statuses = [e["status"] for e in events]
    assert statuses[0] == "in_queue" and statuses[-1] == "completed"
    assert statuses.count("completed") == 1
    assert [ORDER[s] for s in statuses] == sorted(ORDER[s] for s in statuses)
    running = [e for e in events if e["status"] == "in_progress"]
    # Several distinct steps, each a new event, progress never going back.
    assert len({(e["phase"], e["step"]) for e in running}) >= 4, running
    assert [e["progress"] for e in running] == sorted(e["progress"] for e in running)
    assert all(a != b for a, b in itertools.pairwise(events))
    # Each event is exactly what the status route answers for that state: the last one now.
    status = await client.get(f"/v1/requests/{request_id}/status")
    assert events[-1] == status.json()


async def test_a_finished_request_streams_one_event_and_ends(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    request_id = await submit(client)
    await anyio.to_thread.run_sync(run_worker, app)
    r = await client.get(f"/v1/requests/{request_id}/status/stream")
    assert [e["status"] for e in events_of(r.text)] == ["completed"]


async def test_the_stream_has_the_status_routes_auth_and_404(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    request_id = await submit(client)
    async with client_for(app, OTHER_KEY) as other:
        assert_error(
            await other.get(f"/v1/requests/{request_id}/status/stream"), 404, "request_not_found"
        )
    async with client_for(app, None) as anonymous:
        assert_error(
            await anonymous.get(f"/v1/requests/{request_id}/status/stream"), 401, "unauthorized"
        )
    assert_error(await client.get("/v1/requests/nope/status/stream"), 404, "request_not_found")


async def test_prefer_wait_on_status_answers_when_the_request_ends(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    request_id = await submit(client)
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, run_worker, app)
        started = time.monotonic()
        r = await client.get(f"/v1/requests/{request_id}/status", headers={"Prefer": "wait=30"})
        took = time.monotonic() - started
    assert r.status_code == 200
    assert r.json()["status"] == "completed"
    assert r.headers["preference-applied"] == "wait=30"
    assert took < 15, took


async def test_prefer_wait_gives_up_after_n_seconds_with_the_current_state(
    client: httpx.AsyncClient,
) -> None:
    request_id = await submit(client)  # no worker: it stays queued
    started = time.monotonic()
    r = await client.get(f"/v1/requests/{request_id}/status", headers={"Prefer": "wait=1"})
    took = time.monotonic() - started
    assert r.json()["status"] == "in_queue"
    assert r.headers["preference-applied"] == "wait=1"
    assert 0.9 <= took < MAX_WAIT_S / 2, took  # gave up at its n seconds, not at the cap
    # Without the header: at once, and nothing said to be applied.
    r = await client.get(f"/v1/requests/{request_id}/status")
    assert "preference-applied" not in r.headers


async def test_prefer_wait_above_the_cap_is_cut_to_sixty(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    request_id = await submit(client)
    await anyio.to_thread.run_sync(run_worker, app)
    r = await client.get(f"/v1/requests/{request_id}/status", headers={"Prefer": "wait=3600"})
    assert r.headers["preference-applied"] == f"wait={MAX_WAIT_S}"
    assert r.json()["status"] == "completed"


async def test_prefer_wait_on_submit_answers_the_result(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = {"prompt": "push in", **SMALL[SUBMIT]}
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, run_worker, app)
        r = await client.post(SUBMIT, json=body, headers={"Prefer": "wait=30"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert r.headers["preference-applied"] == "wait=30"
    assert answer["status"] == "completed"
    assert answer["output"]["video"].startswith("http://testserver/v1/files/")
    assert answer["cancel_url"].endswith(f"/v1/requests/{answer['request_id']}/cancel")
    video = await client.get(answer["output"]["video"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


async def test_an_idle_stream_sends_keep_alive_comments(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "KEEPALIVE_S", 0.05)
    request_id = await submit(client)

    def later() -> None:
        time.sleep(0.4)  # queued and unchanged meanwhile
        run_worker(app)

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, later)
        r = await client.get(f"/v1/requests/{request_id}/status/stream")
    assert r.text.count(": keep-alive\n\n") >= 3
    # Comments are not events: a client sees the states only.
    assert events_of(r.text)[-1]["status"] == "completed"
