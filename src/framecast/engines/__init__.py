"""Engine selection. Engines are built by the worker (or ``generate``), never at import time."""

from __future__ import annotations

import importlib.util
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
    "hunyuan_unavailable_reason",
    "load_engine",
]

log = logging.getLogger("framecast.engines")


class EngineUnavailable(FramecastError):
    code = "engine_unavailable"
    status = 503


def hunyuan_unavailable_reason(settings: Settings) -> str | None:
    """Why the HunyuanVideo engine cannot run here, or None when it can."""
    if importlib.util.find_spec("framecast.engines.hunyuan") is None:
        return "this build of framecast does not include the HunyuanVideo engine yet"
    return None


def load_engine(settings: Settings) -> Engine:
    choice = settings.engine
    if choice in {"hunyuan", "auto"}:
        reason = hunyuan_unavailable_reason(settings)
        if reason is None:  # pragma: no cover - the engine is not in this build yet
            raise EngineUnavailable("the HunyuanVideo engine is present but not wired in")
        if choice == "hunyuan":
            raise EngineUnavailable(f"FRAMECAST_ENGINE=hunyuan but {reason}")
        log.warning(
            "FRAMECAST_ENGINE=auto: HunyuanVideo cannot run here (%s); using the CPU preview "
            "engine, whose videos are camera moves over the input image, not model output",
            reason,
        )
    from framecast.engines.preview import PreviewEngine

    return PreviewEngine(step_seconds=settings.preview_step_seconds)
