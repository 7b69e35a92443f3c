"""The small interface every engine implements.

An engine turns one image and a prompt into video frames. It knows nothing about HTTP, the
queue or storage: the worker hands it a :class:`GenerationRequest` and :class:`Hooks`, and
encodes whatever frames it yields.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from framecast.contract.errors import ErrorCode
from framecast.errors import FramecastError
from framecast.models.base import NotRunnable as NotRunnable
from framecast.models.request import GenerationRequest as GenerationRequest


class EngineUnavailable(FramecastError):
    """An engine cannot run here; the message says what is missing and what to do."""

    code = ErrorCode.ENGINE_UNAVAILABLE
    status = 503


class EngineNeedsSetup(EngineUnavailable):
    """An engine cannot run here until someone changes something: a package is not installed,
    a setting names no model. A worker fails at once on it, where it retries a plain
    :class:`EngineUnavailable` (weights on a disk still mounting, a GPU still held)."""


class EngineOutOfMemory(FramecastError):
    """The device ran out of memory for this request. Engines raise it in place of their
    framework's error (torch's OutOfMemoryError), so the worker tells it apart by type without
    knowing the framework; the request fails with ``out_of_memory`` and the worker goes on."""

    code = ErrorCode.OUT_OF_MEMORY

    def __init__(self, cause: BaseException) -> None:
        super().__init__(
            f"the engine ran out of GPU memory ({type(cause).__name__}); try a smaller "
            "resolution or a memory-saving offload mode"
        )


class Cancelled(Exception):
    """Raised by :meth:`Hooks.raise_if_cancelled` to stop an engine at a step boundary."""


class Hooks(Protocol):
    """How an engine reports progress and learns it should stop.

    Both are called from the thread that iterates :meth:`Engine.generate`.
    """

    def progress(self, step: int, total: int, phase: str) -> None:
        """``step`` of ``total`` steps of ``phase`` are done (``0 <= step <= total``)."""

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the request was cancelled or this worker lost it."""


class NullHooks:
    """Hooks for local runs: no progress reporting, never cancelled."""

    def progress(self, step: int, total: int, phase: str) -> None:
        return None

    def raise_if_cancelled(self) -> None:
        return None


PEAK_GPU_MEMORY_KEY = "peak_gpu_memory_bytes"
"""The result metadata's key for the most GPU memory a request took, where its engine measures
it (the Hunyuan engines on a GPU); ``/metrics`` reads it."""


class Engine(ABC):
    """One way of making a video. Instances are built once per process and reused."""

    name: str
    """Short engine name, e.g. ``"preview"`` or ``"hunyuan"``; recorded on every result."""

    model: str
    """What model produced the video, e.g. ``"hunyuanvideo-community/HunyuanVideo-I2V"``."""

    @abstractmethod
    def generate(self, request: GenerationRequest, hooks: Hooks) -> Iterator[np.ndarray]:
        """Yield exactly ``request.num_frames`` frames, each ``(height, width, 3)`` uint8 RGB.

        Call ``hooks.raise_if_cancelled()`` at every step boundary and ``hooks.progress`` after
        every step.
        """

    def metadata(self) -> dict[str, Any]:
        """Facts about this engine recorded with every result it produces."""
        return {"engine": self.name, "model": self.model}

    def stages(self) -> tuple[str, ...]:
        """The optional stages beyond the base generation this engine can run (e.g.
        HunyuanVideo 1.5's ``720p_sr``), which its worker advertises so the API can refuse a
        request that needs one no worker has."""
        return ()

    def describe(self, request: GenerationRequest) -> dict[str, Any]:
        """The settings this engine actually used for ``request`` (defaults resolved)."""
        return {}
