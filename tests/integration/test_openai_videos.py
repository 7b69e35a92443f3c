"""OpenAI's videos API, driven by the official, unmodified ``openai`` SDK against the app
in-process (its httpx2 client over the ASGI transport) with a real worker (preview engine)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from framecast.models.hunyuan_i2v import FPS
from framecast.video import probe_mp4

from .inprocess import KEY, OTHER_KEY, SMALL, SUBMIT, client_for, data_uri, png, run_worker

openai = pytest.importorskip("openai")
httpx2 = pytest.importorskip("httpx2")

# The SDK marks its videos methods deprecated (OpenAI's hosted Sora API is closing); the
# shape lives on in self-hosted servers, this one included.
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture
async def sdk(app: FastAPI) -> AsyncIterator[Any]:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield openai.AsyncOpenAI(base_url="http://testserver/v1", api_key=KEY, http_client=http)


@pytest.fixture
def worker(app: FastAPI) -> Iterator[threading.Thread]:
    """A preview worker that runs one request in the background."""
    thread = threading.Thread(target=run_worker, args=(app, 1), daemon=True)
    thread.start()
    yield thread
    thread.join(timeout=120)


async def test_the_sdk_makes_polls_downloads_lists_and_deletes_a_video(
    sdk: Any, worker: threading.Thread, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    video = await sdk.videos.create_and_poll(
        model="tencent/hunyuan/image-to-video",
        prompt="a slow push in",
        input_reference=("still.png", png((96, 160)), "image/png"),
        seconds="1",
        size="360x640",
    )
    assert video.status == "completed", video
    assert (video.progress, video.object, video.model) == (100, "video", SUBMIT[11:])
    # Portrait asked, the model's nearest portrait bucket made (360p 9:16); 1 s at 24 fps is
    # 24 frames, the nearest 4n+1 is 25.
    assert (video.size, video.seconds) == ("352x608", "1.04")
    assert video.completed_at >= video.created_at and video.error is None

    mp4 = tmp_path / "video.mp4"
    (await sdk.videos.download_content(video.id)).write_to_file(mp4)
    info = probe_mp4(mp4)
    assert (info.width, info.height, info.num_frames, info.fps) == (352, 608, 25, FPS)
    poster = await sdk.videos.download_content(video.id, variant="thumbnail")
    assert poster.response.headers["content-type"] == "image/jpeg"
    assert poster.content[:3] == b"\xff\xd8\xff"

    listed = [v.id async for v in sdk.videos.list(limit=1)]
    assert listed == [video.id]
    # The same request, the RunComfy way: one request table.
    assert (await client.get(f"/v1/requests/{video.id}/status")).json()["status"] == "completed"

    deleted = await sdk.videos.delete(video.id)
    assert (deleted.id, deleted.deleted) == (video.id, True)
    with pytest.raises(openai.NotFoundError):
        await sdk.videos.retrieve(video.id)
    assert (await client.get(f"/v1/requests/{video.id}/status")).status_code == 404
    assert [v.id async for v in sdk.videos.list()] == []


async def test_a_wrong_key_is_the_sdks_authentication_error(app: FastAPI) -> None:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
        wrong = openai.AsyncOpenAI(base_url="http://t/v1", api_key="not-a-key", http_client=http)
        with pytest.raises(openai.AuthenticationError) as caught:
            await wrong.videos.list()
    error = caught.value.body
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == "authentication_error"


async def test_errors_are_bad_requests_naming_the_parameter(sdk: Any) -> None:
    image = ("i.png", png(), "image/png")
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "input_reference"),  # an image-to-video model needs its image
        ({"input_reference": image, "model": "sora-2"}, "model"),
        ({"input_reference": image, "size": "wide"}, "size"),
        ({"input_reference": image, "seconds": "-1"}, "seconds"),
        ({"input_reference": image, "extra_body": {"seed": "many"}}, "seed"),
        (
            {"input_reference": image, "size": "1280x720", "extra_body": {"resolution": "360p"}},
            "resolution",
        ),
        ({"input_reference": image, "extra_body": {"colour": "red"}}, "colour"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.videos.create(prompt="p", **kwargs)
        assert caught.value.body["param"] == param, (kwargs, caught.value.body)
        assert caught.value.body["type"] == "invalid_request_error"


async def test_json_bodies_take_an_image_url_and_the_models_own_fields(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    r = await client.post(
        "/v1/videos",
        json={
            "model": "tencent/hunyuan-video-v1.5/image-to-video",
            "prompt": "waves",
            "input_reference": {"image_url": data_uri(png((64, 64)))},
            "size": "720x720",
            "seconds": 100,  # past the model's maximum: capped to it
            "seed": 7,
        },
    )
    assert r.status_code == 200, r.text
    video = r.json()
    assert video["status"] == "queued" and video["progress"] == 0
    # 1:1 at the nearer resolution (480p's 640x640 over 720p's 960x960); 241 frames, the
    # 1.5 model's maximum, at 24 fps.
    assert (video["size"], video["seconds"]) == ("640x640", "10.04")
    job = app.state.services.jobs.get(video["id"])
    assert (job.input["seed"], job.input["num_frames"], job.input["aspect_ratio"]) == (
        7,
        241,
        "1:1",
    )
    assert job.input["image"] == "data:image/png;base64,..."  # the image is stored once, beside


async def test_requests_made_either_way_list_both_ways_and_stay_their_owners(
    app: FastAPI, client: httpx.AsyncClient, sdk: Any
) -> None:
    r = await client.post(SUBMIT, json={"prompt": "p", **SMALL[SUBMIT]})
    runcomfy = r.json()["request_id"]
    video = await sdk.videos.create(prompt="p", input_reference=("i.png", png(), "image/png"))
    assert [v.id async for v in sdk.videos.list(order="asc")] == [runcomfy, video.id]
    first = await sdk.videos.list(order="desc", limit=1)
    assert [v.id for v in first.data] == [video.id] and first.has_more
    rest = await sdk.videos.list(order="desc", after=video.id)
    assert [v.id for v in rest.data] == [runcomfy] and not rest.has_more
    # 360p 16:9 and 5 frames, as the RunComfy request asked.
    assert ((await sdk.videos.retrieve(runcomfy)).size, first.data[0].size) == (
        "608x352",
        "1248x704",  # no size: the model's default, 720p 16:9
    )
    async with client_for(app, OTHER_KEY) as other:
        assert (await other.get(f"/v1/videos/{video.id}")).status_code == 404
        assert (await other.get("/v1/videos")).json()["data"] == []
    # Deleting a queued video cancels it: it never runs.
    await sdk.videos.delete(runcomfy)
    job = app.state.services.jobs.get(runcomfy)
    assert job.status.value == "cancelled" and job.deleted_at is not None
