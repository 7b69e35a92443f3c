"""Engine selection. Engines are built by the worker (or ``generate``), never at import time."""

from __future__ import annotations

import logging

from framecast.engines.base import Cancelled, Engine, GenerationRequest, Hooks, NullHooks
from framecast.errors import FramecastError
from framecast.settings import Settings

__all__ = [
    "Cancelled",
    "Engine",
    "EngineUnavailable",
    "GenerationRequest",
    "Hooks",
    "NullHooks",
    "load_engine",
]

log = logging.getLogger("framecast.engines")


class EngineUnavailable(FramecastError):
    code = "engine_unavailable"
    status = 503


def load_engine(settings: Settings) -> Engine:
    choice = settings.engine
    if choice in {"hunyuan", "auto"}:
        # The HunyuanVideo engine is its own piece of work and not in this build yet.
        reason = "this build of framecast does not include the HunyuanVideo engine yet"
        if choice == "hunyuan":
            raise EngineUnavailable(f"FRAMECAST_ENGINE=hunyuan but {reason}")
        log.warning(
            "FRAMECAST_ENGINE=auto: HunyuanVideo cannot run here (%s); using the CPU preview "
            "engine, whose videos are camera moves over the input image, not model output",
            reason,
        )
    from framecast.engines.preview import PreviewEngine

    return PreviewEngine(step_seconds=settings.preview_step_seconds)
