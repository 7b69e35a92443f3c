"""A worker running the tiny hunyuan engine with FRAMECAST_LORA_DIR: a request's LoRA changes
its video and its result names it; a LoRA gone from the folder fails the request clearly."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")


from framecast.db import migrate
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.loras import LoraSettings
from framecast.engines.hunyuan.weights import resolve_model
from framecast.models.hunyuan_i2v import MODEL_ID
from framecast.settings import Settings
from framecast.states import Status
from framecast.worker.loop import Worker

from .tiny_jobs import submit as submit_tiny
from .tiny_loras import save_tiny_lora


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    save_tiny_lora(folder)
    return folder


@pytest.fixture
def worker(tmp_path: Path, lora_dir: Path) -> Iterator[Worker]:
    engine = HunyuanEngine.load(resolve_model("tiny-random"), loras=LoraSettings(lora_dir))
    settings = Settings(
        data_dir=tmp_path, x264_preset="ultrafast", heartbeat_seconds=60, lora_dir=lora_dir
    )
    w = Worker(settings, engines={MODEL_ID: engine})
    migrate(w.db)
    yield w
    w.db.dispose()


def submit(worker: Worker, **inputs: Any) -> str:
    return submit_tiny(worker, seed=5, **inputs)


def run_one(worker: Worker) -> dict[str, Any]:
    lease = worker.jobs.claim(worker.id)
    assert lease is not None
    worker.process(lease)
    job = worker.jobs.get(lease.request_id)
    assert job is not None
    return {"status": job.status, "result": job.result, "error": job.error_code, "job": job}


def test_a_lora_changes_the_video_and_the_result_names_it(
    worker: Worker, lora_dir: Path, tmp_path: Path
) -> None:
    submit(worker, loras=[{"path": "watercolor", "scale": 0.9}])
    submit(worker)
    with_lora, without = run_one(worker), run_one(worker)
    assert with_lora["status"] is Status.COMPLETED and without["status"] is Status.COMPLETED
    videos = [worker.storage.get_bytes(r["result"].video_key) for r in (with_lora, without)]
    assert videos[0] != videos[1]
    sha = hashlib.sha256((lora_dir / "watercolor.safetensors").read_bytes()).hexdigest()
    meta = with_lora["result"].metadata
    assert meta["loras"] == [{"path": "watercolor", "scale": 0.9, "sha256": sha}]
    assert "loras" not in without["result"].metadata

    # Removed from the folder between submit and run: the request fails saying so.
    submit(worker, loras=[{"path": "watercolor"}])
    moved = tmp_path / "watercolor.safetensors"
    (lora_dir / "watercolor.safetensors").rename(moved)
    try:
        failed = run_one(worker)
    finally:
        moved.rename(lora_dir / "watercolor.safetensors")
    assert failed["status"] is Status.FAILED and failed["error"] == "invalid_input"
    assert "no LoRA named 'watercolor'" in (failed["job"].error_message or "")
