"""Queueing a request straight into a worker's store (no API) for the tiny-model worker tests."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

from PIL import Image

from framecast.engines.base import Cancelled, GenerationRequest
from framecast.models.hunyuan_i2v import FPS, MODEL_ID
from framecast.storage import LocalStorage
from framecast.worker.loop import Worker


def submit(worker: Worker, **inputs: Any) -> str:
    """A 360p, 5-frame, 2-step request for a 200x120 image; ``inputs`` override any field."""
    buf = io.BytesIO()
    Image.new("RGB", (200, 120), (30, 90, 200)).save(buf, "PNG")
    key = f"inputs/{uuid.uuid4().hex}/image.png"
    worker.storage.put_bytes(key, buf.getvalue())
    params = {
        "prompt": "a blue sky",
        "image_url": "data:",
        "resolution": "360p",
        "num_frames": 5,
        "num_inference_steps": 2,
        **inputs,
    }
    return worker.jobs.submit(owner="o", model=MODEL_ID, input=params, image_key=key).id


def stored_path(worker: Worker, key: str) -> Path:
    """Where ``key`` is on disk: these tests keep the worker's store in a local folder."""
    assert isinstance(worker.storage, LocalStorage), worker.storage
    return worker.storage.path(key)


def engine_request(
    prompt: str, width: int, height: int, frames: int, **options: object
) -> GenerationRequest:
    """A request straight to an engine: a blue 200x120 image with a red square, seed 7, 2 steps;
    ``options`` add to or override the engine options."""
    image = Image.new("RGB", (200, 120), (30, 90, 200))
    image.paste((220, 40, 40), (60, 30, 120, 90))
    return GenerationRequest(
        image=image,
        prompt=prompt,
        seed=7,
        width=width,
        height=height,
        num_frames=frames,
        fps=FPS,
        options={"num_inference_steps": 2, **options},
    )


class CancelAfterFirstStep:
    """Hooks whose client cancels once the first denoising step is done."""

    def __init__(self) -> None:
        self.steps = 0

    def progress(self, step: int, total: int, phase: str) -> None:
        if phase == "denoising":
            self.steps = step

    def raise_if_cancelled(self) -> None:
        if self.steps >= 1:
            raise Cancelled("cancelled by the client")
