"""framecast.client against the routes of this work, in-process: subscribe over the status
stream, listing page by page, Idempotency-Key, and a 429 as an APIError."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from pydantic import JsonValue

from framecast.client import APIError, AsyncClient, RequestStatus

from .inprocess import KEY, SMALL, SUBMIT, make_app, run_worker

pytestmark = pytest.mark.anyio
MODEL = SUBMIT.removeprefix("/v1/models/")
FIELDS: dict[str, JsonValue] = {"prompt": "push in", "resolution": "360p", "num_frames": 5}
FIELDS["image_url"] = str(SMALL[SUBMIT]["image_url"])


class _Recording(httpx.AsyncBaseTransport):
    """The app over httpx's ASGI transport, recording each path asked for."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


async def test_subscribe_follows_the_stream_without_polling(tmp_path: Path) -> None:
    app = make_app(tmp_path, poll_seconds=0.02)
    transport = _Recording(app)
    seen: list[RequestStatus] = []
    async with (
        AsyncClient("http://testserver", KEY, transport=transport) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(anyio.to_thread.run_sync, lambda: run_worker(app))
        result = await client.subscribe(MODEL, FIELDS, on_progress=seen.append, timeout=60)
    assert result.status == "completed" and result.video_url is not None
    rid = result.request_id
    assert transport.paths.count(f"/v1/requests/{rid}/status/stream") == 1
    assert f"/v1/requests/{rid}/status" not in transport.paths
    # The worker runs beside the client, so it may claim before the stream's first event:
    # the first state seen is in_queue or in_progress, and states only go forward.
    order = [("in_queue", "in_progress", "completed").index(s.status) for s in seen]
    assert order == sorted(order) and seen[-1].status == "completed"
    assert any(s.status == "in_progress" for s in seen)
    assert all(a != b for a, b in itertools.pairwise(seen))


async def test_listing_and_idempotency_through_the_client(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient("http://testserver", KEY, transport=transport) as client:
        first = await client.submit(MODEL, FIELDS, idempotency_key="job-1")
        again = await client.submit(MODEL, FIELDS, idempotency_key="job-1")
        assert again.request_id == first.request_id
        with pytest.raises(APIError) as err:
            await client.submit(MODEL, {**FIELDS, "seed": 1}, idempotency_key="job-1")
        assert (err.value.status_code, err.value.code) == (409, "idempotency_key_reused")
        made = [first.request_id] + [
            (await client.submit(MODEL, FIELDS)).request_id for _ in range(4)
        ]
        page = await client.list_requests(limit=2)
        assert len(page.requests) == 2 and page.next_cursor is not None
        every = [s.request_id async for s in client.iter_requests(page_size=2)]
        assert every == list(reversed(made))
        queued = await client.list_requests(status="in_queue", limit=100)
        assert {s.request_id for s in queued.requests} == set(made)
        assert all(s.queue_position is not None for s in queued.requests)


async def test_a_refused_submit_raises_with_the_limit(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_active_per_key=1)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient("http://testserver", KEY, transport=transport) as client:
        await client.submit(MODEL, FIELDS)
        with pytest.raises(APIError) as err:
            await client.submit(MODEL, FIELDS)
    e = err.value
    assert (e.status_code, e.error_code, e.code) == (429, 429001, "too_many_active_requests")
    assert "wait for one to finish" in e.message
