"""The worker in-process against a real SQLite database and local storage."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, update

from framecast.db import requests
from framecast.engines.base import Engine, EngineOutOfMemory, GenerationRequest, Hooks
from framecast.engines.preview import PreviewEngine
from framecast.queue.jobs import CancelOutcome, JobStore
from framecast.queue.registry import WorkerState
from framecast.settings import Settings
from framecast.states import Status
from framecast.video import probe_mp4
from framecast.worker.loop import Worker

MODEL = "tencent/hunyuan/image-to-video"


class ScriptedEngine(Engine):
    """The preview engine, except for prompts that ask it to misbehave, or ask for something
    to happen to the request while it runs."""

    name = "scripted"
    model = "test/scripted"

    def __init__(self, jobs: JobStore, stop: threading.Event) -> None:
        self.preview = PreviewEngine()
        self.jobs = jobs
        self.stop = stop

    def generate(self, request: GenerationRequest, hooks: Hooks) -> Iterator[np.ndarray]:
        if request.prompt == "explode":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if request.prompt == "oom":  # as the Hunyuan engines raise torch's
            raise EngineOutOfMemory(RuntimeError("CUDA out of memory"))
        for i, frame in enumerate(self.preview.generate(request, hooks)):
            if i == 3 and request.prompt == "steal":
                with self.jobs.engine.begin() as conn:  # another worker's requeue, in effect
                    conn.execute(
                        update(requests).values(status="in_queue", lease_token=None, worker_id=None)
                    )
            if i == 3 and request.prompt == "cancel me":
                with self.jobs.engine.connect() as conn:
                    [request_id] = conn.execute(select(requests.c.id)).scalars()
                outcome = self.jobs.cancel(request_id, "o")
                assert outcome is not None and outcome[0] is CancelOutcome.REQUESTED
            if i == 3 and request.prompt == "stop":
                self.stop.set()  # SIGTERM, in effect
            yield frame


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast", heartbeat_seconds=60)
    w = Worker(settings)
    w.engines = {MODEL: ScriptedEngine(w.jobs, w.stop)}
    w.serves = [MODEL]
    from framecast.db import migrate

    migrate(w.db)
    yield w
    w.db.dispose()


def _submit(worker: Worker, prompt: str, num_frames: int = 129) -> str:
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
        "num_frames": num_frames,
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
    worker: Worker, prompt: str, code: str, needle: str, tmp_path: Path
) -> None:
    bad, good = _submit(worker, prompt), _submit(worker, "push in")
    _run_one(worker)
    failed = worker.jobs.get(bad)
    assert failed is not None and failed.status is Status.FAILED
    assert failed.error_code == code and needle in (failed.error_message or "")
    _run_one(worker)
    done = worker.jobs.get(good)
    assert done is not None and done.status is Status.COMPLETED and done.result is not None
    video = tmp_path / "video.mp4"
    video.write_bytes(worker.storage.get_bytes(done.result.video_key))
    info = probe_mp4(video)
    assert (info.num_frames, info.width, info.height, info.fps) == (129, 1248, 704, 24)
    assert worker.storage.exists(done.result.poster_key)
    assert done.result.metadata["engine"] == "scripted"
    assert done.result.metadata["model_id"] == MODEL and done.result.metadata["seed"] == 1
    assert not any(worker.scratch.folder.glob("*"))  # the render folder is gone


def test_a_worker_that_lost_its_lease_writes_nothing(worker: Worker) -> None:
    rid = _submit(worker, "steal")
    _run_one(worker)
    job = worker.jobs.get(rid)
    assert job is not None and job.status is Status.IN_QUEUE
    assert job.result is None and job.error_code is None
    assert not worker.storage.exists(f"outputs/{rid}/video.mp4")


def test_a_cancel_while_rendering_ends_the_request_cancelled(worker: Worker) -> None:
    rid = _submit(worker, "cancel me", num_frames=9)
    _run_one(worker)
    job = worker.jobs.get(rid)
    assert job is not None and job.status is Status.CANCELLED
    assert job.result is None and job.finished_at is not None
    assert not worker.storage.exists(f"outputs/{rid}/video.mp4")


def test_a_stopping_worker_gives_the_request_back_without_counting_the_attempt(
    worker: Worker,
) -> None:
    rid = _submit(worker, "stop", num_frames=9)
    _run_one(worker)
    job = worker.jobs.get(rid)
    assert job is not None and job.status is Status.IN_QUEUE
    assert job.attempts == 0 and job.lease_token is None and job.finished_at is None


def test_a_database_gone_at_shutdown_still_releases_the_scratch_folder(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    # The last beat ("stopped") fails, as when the database went away first: the worker still
    # gives up its scratch claim and ends without a traceback.
    def beat(*_args: object, **fields: object) -> None:
        if fields.get("state") is WorkerState.STOPPED:
            raise RuntimeError('relation "workers" does not exist')

    worker.registry.beat = beat  # type: ignore[method-assign]
    worker.run(max_jobs=0)
    assert not worker.scratch.folder.exists()
    assert 'could not record that it stopped: relation "workers" does not exist' in caplog.text
