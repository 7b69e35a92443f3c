"""The worker in-process against a real SQLite database and local storage."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import update

from framecast.db import requests
from framecast.engines.base import Engine, GenerationRequest, Hooks
from framecast.engines.preview import PreviewEngine
from framecast.jobs import JobStore
from framecast.settings import Settings
from framecast.states import Status
from framecast.video import probe_mp4
from framecast.worker import Worker

MODEL = "tencent/hunyuan/image-to-video"


class ScriptedEngine(Engine):
    """The preview engine, except for prompts that ask it to misbehave."""

    name = "scripted"
    model = "test/scripted"

    def __init__(self, jobs: JobStore | None = None) -> None:
        self.preview = PreviewEngine()
        self.jobs = jobs

    def generate(self, request: GenerationRequest, hooks: Hooks) -> Iterator[np.ndarray]:
        if request.prompt == "explode":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if request.prompt == "oom":
            raise type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")
        for i, frame in enumerate(self.preview.generate(request, hooks)):
            if request.prompt == "steal" and i == 3 and self.jobs is not None:
                with self.jobs.engine.begin() as conn:  # another worker's requeue, in effect
                    conn.execute(
                        update(requests).values(status="in_queue", lease_token=None, worker_id=None)
                    )
            yield frame


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast", heartbeat_seconds=60)
    w = Worker(settings)
    w.engines = {MODEL: ScriptedEngine(w.jobs)}
    w.serves = [MODEL]
    from framecast.db import migrate

    migrate(w.db)
    yield w
    w.db.dispose()


def _submit(worker: Worker, prompt: str) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (160, 90), (30, 90, 200)).save(buf, "PNG")
    key = f"inputs/{prompt.replace(' ', '-')}/image.png"
    worker.storage.put_bytes(key, buf.getvalue())
    params = {
        "prompt": prompt,
        "image_url": "data:",
        "seed": 1,
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "num_frames": 129,
    }
    return worker.jobs.submit(owner="o", model=MODEL, input=params, image_key=key).id


def _run_one(worker: Worker) -> None:
    lease = worker.jobs.claim(worker.id)
    assert lease is not None
    worker.process(lease)


@pytest.mark.parametrize(
    ("prompt", "code", "needle"),
    [("explode", "engine_error", "illegal memory access"), ("oom", "out_of_memory", "GPU memory")],
)
def test_engine_error_fails_the_request_and_the_worker_goes_on(
    worker: Worker, prompt: str, code: str, needle: str
) -> None:
    bad, good = _submit(worker, prompt), _submit(worker, "push in")
    _run_one(worker)
    failed = worker.jobs.get(bad)
    assert failed is not None and failed.status is Status.FAILED
    assert failed.error_code == code and needle in (failed.error_message or "")
    _run_one(worker)
    done = worker.jobs.get(good)
    assert done is not None and done.status is Status.COMPLETED and done.result is not None
    info = probe_mp4(worker.storage.path(done.result["video_key"]))
    assert (info.num_frames, info.width, info.height, info.fps) == (129, 1248, 704, 24)
    assert done.result["metadata"]["engine"] == "scripted"
    assert not list((worker.settings.data_dir / "tmp").iterdir())


def test_a_worker_that_lost_its_lease_writes_nothing(worker: Worker) -> None:
    rid = _submit(worker, "steal")
    _run_one(worker)
    job = worker.jobs.get(rid)
    assert job is not None and job.status is Status.IN_QUEUE
    assert job.result is None and job.error_code is None
    assert not worker.storage.exists(f"outputs/{rid}/video.mp4")
