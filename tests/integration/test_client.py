"""framecast.client against the real app in-process (httpx's ASGI transport), with a real
preview-engine worker where a request must finish."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import av
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from pydantic import JsonValue

from framecast.client import APIError, AsyncClient, Client, RequestStatus

from .inprocess import KEY, data_uri, png, run_worker

pytestmark = pytest.mark.anyio
MODEL = "tencent/hunyuan/image-to-video"
SMALL: dict[str, JsonValue] = {"prompt": "push in", "resolution": "360p", "num_frames": 5}


class _NoStream(httpx.AsyncBaseTransport):
    """The app, minus any status stream (as RunComfy, or a framecast without the route): the
    stream route answers 404 whatever the app has. Records every path asked for."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path.endswith("/status/stream"):
            return httpx.Response(404, json={"error_code": 404001, "error_message": "Not Found"})
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient("http://testserver", KEY, transport=transport) as c:
        yield c


async def test_subscribe_polls_without_a_stream_and_returns_the_video(
    app: FastAPI, tmp_path: Path
) -> None:
    transport = _NoStream(app)
    seen: list[RequestStatus] = []
    async with AsyncClient("http://testserver", KEY, transport=transport) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, lambda: run_worker(app))
            result = await client.subscribe(
                MODEL,
                {**SMALL, "image_url": data_uri(png())},
                on_progress=seen.append,
                poll_interval=0.02,
                timeout=60,
            )
        video = await client.download(result, tmp_path / "v.mp4")
    assert result.status == "completed" and result.metadata is not None
    assert result.metadata["engine"] == "preview"
    with av.open(str(video)) as container:
        assert len(list(container.decode(video=0))) == 5
    # The stream was tried once, answered 404, and the states came from polling, in order.
    stream_calls = [p for p in transport.paths if p.endswith("/status/stream")]
    assert len(stream_calls) == 1
    assert transport.paths.count(f"/v1/requests/{result.request_id}/status") >= 2
    order = ["in_queue", "in_progress", "completed"]
    statuses = [s.status for s in seen]
    assert statuses[-1] == "completed"
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)
    # One callback per distinct state, not one per poll.
    assert all(a != b for a, b in itertools.pairwise(seen))


async def test_error_answers_raise_one_exception_with_code_and_message(
    client: AsyncClient, app: FastAPI
) -> None:
    with pytest.raises(APIError) as err:
        await client.status("no-such-id")
    e = err.value
    assert (e.status_code, e.error_code, e.code) == (404, 404001, "request_not_found")
    assert e.message == "no request with id no-such-id"

    with pytest.raises(APIError) as err:
        await client.submit(MODEL, {"prompt": "p", "image_url": data_uri(png()), "seed": -1})
    e = err.value
    assert (e.status_code, e.error_code, e.code) == (422, 422001, "invalid_input")
    assert isinstance(e.detail, list) and isinstance(e.detail[0], dict)
    assert e.detail[0]["loc"] == ["body", "seed"]
    assert "seed" in e.message

    with pytest.raises(APIError) as err:
        await client.submit("no/such-model", {"prompt": "p"})
    assert (err.value.status_code, err.value.error_code) == (404, 400001)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient("http://testserver", "wrong-key", transport=transport) as stranger:
        with pytest.raises(APIError) as err:
            await stranger.status("no-such-id")
    assert (err.value.status_code, err.value.error_code) == (401, 401001)
    assert str(err.value) == "invalid or revoked API key (HTTP 401, 401001, unauthorized)"


async def test_cancel_a_queued_request_then_waiting_raises(client: AsyncClient) -> None:
    submitted = await client.submit(MODEL, {**SMALL, "image_url": data_uri(png())})
    status = await client.status(submitted.request_id)
    assert (status.status, status.queue_position) == ("in_queue", 0)

    first = await client.cancel(submitted.request_id)
    assert (first.outcome, first.status) == ("cancelled", "cancelled")
    # framecast answers 409 for a finished request: the client reads it as RunComfy's answer.
    again = await client.cancel(submitted.request_id)
    assert (again.outcome, again.status) == ("not_cancellable", "cancelled")

    with pytest.raises(APIError) as err:
        await client.wait(submitted.request_id, poll_interval=0.01, timeout=10)
    assert (err.value.code, err.value.request_id) == ("cancelled", submitted.request_id)
    result = await client.result(submitted.request_id)
    assert result.status == "cancelled" and result.video_url is None


async def test_wait_gives_up_after_its_timeout(client: AsyncClient) -> None:
    submitted = await client.submit(MODEL, {**SMALL, "image_url": data_uri(png())})
    with pytest.raises(APIError) as err:
        await client.wait(submitted.request_id, poll_interval=0.01, timeout=0.2)
    assert err.value.code == "wait_timeout" and "still in_queue" in err.value.message


class _PortalTransport(httpx.BaseTransport):
    """The app for a sync httpx client: each request goes over httpx's ASGI transport on an
    event loop in another thread (an anyio blocking portal), its answer read whole."""

    def __init__(self, app: FastAPI, portal: BlockingPortal) -> None:
        self.inner = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            answer = await self.inner.handle_async_request(request)
            content = await answer.aread()
            return httpx.Response(answer.status_code, headers=answer.headers, content=content)

        return self.portal.call(send)


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as portal:
        yield portal


def test_the_sync_client_in_process(app: FastAPI, tmp_path: Path, portal: BlockingPortal) -> None:
    transport = _PortalTransport(app, portal)
    with Client("http://testserver", KEY, transport=transport) as client:
        submitted = client.submit(MODEL, {**SMALL, "image_url": data_uri(png())})
        assert (
            submitted.status_url == f"http://testserver/v1/requests/{submitted.request_id}/status"
        )
        run_worker(app)
        result = client.wait(submitted.request_id, poll_interval=0.01, timeout=30)
        assert result.video_url is not None and "signature=" in result.video_url
        video = client.download(result, tmp_path / "sync.mp4")
        assert video.read_bytes()[4:8] == b"ftyp"
        with pytest.raises(APIError) as err:
            client.cancel("nope")
        assert err.value.error_code == 404001
