"""The official ``openai`` SDK against /v1/videos with a worker running the tiny random
HunyuanVideo-I2V model (not the preview engine): the model's own path, end to end."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("openai")

import httpx2
import openai

from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.weights import resolve_model
from framecast.models.hunyuan_i2v import MODEL_ID
from framecast.video import probe_mp4
from framecast.worker.loop import Worker

from .inprocess import KEY, make_app, png, services_of

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_the_sdk_runs_the_tiny_model_with_the_models_own_options(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    settings = services_of(app).settings.model_copy(update={"x264_preset": "ultrafast"})
    worker = Worker(settings, engines={MODEL_ID: HunyuanEngine.load(resolve_model("tiny-random"))})
    thread = threading.Thread(target=worker.run, kwargs={"max_jobs": 1}, daemon=True)
    thread.start()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
        # Any: the SDK types size and seconds as Sora's values; the server takes any.
        sdk: Any = openai.AsyncOpenAI(base_url="http://t/v1", api_key=KEY, http_client=http)
        video = await sdk.videos.create_and_poll(
            model=MODEL_ID,
            prompt="a blue sky",
            input_reference=("sky.png", png((200, 120)), "image/png"),
            seconds="0.2",  # 4.8 frames: the nearest 4n+1 is 5
            size="352x608",
            # The model's own fields, by their RunComfy names, through multipart as JSON text.
            extra_body={"num_inference_steps": 2, "seed": 3},
        )
        assert video.status == "completed", video.error
        assert (video.size, video.seconds) == ("352x608", "0.21")
        mp4 = tmp_path / "tiny.mp4"
        (await sdk.videos.download_content(video.id)).write_to_file(mp4)
    thread.join(timeout=60)
    info = probe_mp4(mp4)
    assert (info.width, info.height, info.num_frames) == (352, 608, 5)
    job = services_of(app).jobs.get(video.id)
    assert job is not None and job.result is not None
    meta = job.result.metadata
    assert (meta["engine"], meta["num_inference_steps"], meta["seed"]) == ("hunyuan", 2, 3)
