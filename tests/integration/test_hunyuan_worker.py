"""The worker running the hunyuan engine (tiny random model) against real SQLite and storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch
from PIL import Image

from framecast.db import migrate
from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.weights import resolve_model
from framecast.models.hunyuan_i2v import FPS, MODEL_ID
from framecast.settings import Settings
from framecast.states import Status
from framecast.video import probe_mp4
from framecast.worker.loop import Worker

from .tiny_jobs import stored_path, submit


@pytest.fixture(scope="module")
def engine() -> HunyuanEngine:
    return HunyuanEngine.load(resolve_model("tiny-random"))


@pytest.fixture
def worker(tmp_path: Path, engine: HunyuanEngine) -> Iterator[Worker]:
    settings = Settings(data_dir=tmp_path, x264_preset="ultrafast", heartbeat_seconds=60)
    w = Worker(settings, engines={MODEL_ID: engine})
    migrate(w.db)
    yield w
    w.db.dispose()


def run_one(worker: Worker) -> None:
    lease = worker.jobs.claim(worker.id)
    assert lease is not None
    worker.process(lease)


def test_out_of_memory_fails_the_request_clearly_and_the_next_one_runs(
    worker: Worker, engine: HunyuanEngine
) -> None:
    first, second = submit(worker), submit(worker, aspect_ratio="9:16")

    def oom_once(*_: Any) -> None:
        handle.remove()
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    handle = engine.pipe.transformer.register_forward_pre_hook(oom_once)
    run_one(worker)
    failed = worker.jobs.get(first)
    assert failed is not None and failed.status is Status.FAILED
    assert failed.error_code == "out_of_memory"
    assert "smaller resolution" in (failed.error_message or "")

    run_one(worker)
    done = worker.jobs.get(second)
    assert done is not None and done.status is Status.COMPLETED and done.result is not None
    info = probe_mp4(stored_path(worker, done.result.video_key))
    assert (info.width, info.height, info.num_frames) == (352, 608, 5)
    meta = done.result.metadata
    assert meta["engine"] == "hunyuan" and meta["tiny_random"] is True
    assert (meta["num_inference_steps"], meta["flow_shift"], meta["i2v_stability"]) == (
        2,
        7.0,
        True,
    )


def test_cancel_during_denoising_stops_at_a_step_and_ends_cancelled(
    worker: Worker, engine: HunyuanEngine
) -> None:
    rid = submit(worker, num_inference_steps=30)
    passes: list[int] = []

    def cancel_at_third(*_: Any) -> None:
        passes.append(1)
        if len(passes) == 3:
            worker.jobs.cancel(rid, "o")

    handle = engine.pipe.transformer.register_forward_pre_hook(cancel_at_third)
    try:
        run_one(worker)
    finally:
        handle.remove()
    job = worker.jobs.get(rid)
    assert job is not None and job.status is Status.CANCELLED
    assert job.phase == "denoising" and job.total_steps == 30
    # Progress writes are coalesced to one per 0.2 s, so the stop is noticed within that.
    assert 3 <= len(passes) < 30
    assert not worker.storage.exists(f"outputs/{rid}/video.mp4")


_CHILD = """
import json, sys
import numpy as np
from PIL import Image
from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.selection import load_engine
from framecast.settings import Settings
req = json.loads(sys.argv[1])
engine = load_engine(Settings(engine="hunyuan"), "tencent/hunyuan/image-to-video")
image = Image.new("RGB", (100, 60), (200, 40, 10))
frames = np.stack(list(engine.generate(GenerationRequest(image=image, **req), NullHooks())))
np.save(sys.argv[2], frames)
print(json.dumps(engine.metadata()))
"""


class RequestFields(TypedDict):
    """A GenerationRequest's fields but its image: what the child process is sent as JSON."""

    prompt: str
    seed: int
    width: int
    height: int
    num_frames: int
    fps: int
    options: dict[str, Any]


def test_saved_tiny_model_loads_offline_from_a_directory_with_the_same_output(
    tmp_path: Path, engine: HunyuanEngine
) -> None:
    model_dir = tmp_path / "tiny-model"
    engine.pipe.save_pretrained(model_dir)
    req: RequestFields = {
        "prompt": "waves",
        "seed": 3,
        "width": 64,
        "height": 48,
        "num_frames": 5,
        "fps": FPS,
        "options": {"num_inference_steps": 2},
    }
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "empty-cache"),
        "FRAMECAST_HUNYUAN_MODEL": str(model_dir),
        "FRAMECAST_DEVICE": "cpu",
    }
    out = tmp_path / "frames.npy"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(req), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads(proc.stdout.strip().splitlines()[-1])
    assert meta["model"] == str(model_dir) and "tiny_random" not in meta
    image = Image.new("RGB", (100, 60), (200, 40, 10))
    expected = np.stack(list(engine.generate(GenerationRequest(image=image, **req), NullHooks())))
    np.testing.assert_array_equal(np.load(out), expected)
