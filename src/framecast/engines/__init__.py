"""Engine selection. Engines are built by the worker (or ``generate``), never at import time."""

from __future__ import annotations

import importlib.util
import logging

from framecast.engines.base import Cancelled, Engine, GenerationRequest, Hooks, NullHooks
from framecast.engines.hunyuan.weights import ModelSource, WeightsError, resolve_model
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
    """The engine ``FRAMECAST_ENGINE`` asks for, loaded and ready to run.

    ``hunyuan`` fails with a message that says what is missing; ``auto`` takes hunyuan when it
    can run here (its packages, a GPU and its weights) and otherwise preview, saying why.
    """
    choice = settings.engine
    if choice == "hunyuan":
        return _load_hunyuan(settings)
    if choice == "auto":
        source, reason = _hunyuan_here(settings)
        if source is not None:
            return _load_hunyuan(settings, source)
        log.warning(
            "FRAMECAST_ENGINE=auto: using the CPU preview engine, whose videos are camera "
            "moves over the input image, not model output, because %s",
            reason,
        )
    from framecast.engines.preview import PreviewEngine

    return PreviewEngine(step_seconds=settings.preview_step_seconds)


def _missing_packages() -> list[str]:
    return [
        m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None
    ]


def _load_hunyuan(settings: Settings, source: ModelSource | None = None) -> Engine:
    missing = _missing_packages()
    if missing:
        raise EngineUnavailable(
            f"FRAMECAST_ENGINE=hunyuan needs {', '.join(missing)}; install framecast with its "
            "hunyuan extra (pip install 'framecast[hunyuan]') and a torch build for your GPU"
        )
    if source is None:
        source = resolve_model(settings.hunyuan_model)  # before importing torch: fail fast
    from framecast.engines.hunyuan.engine import HunyuanEngine
    from framecast.engines.hunyuan.loras import LoraSettings

    return HunyuanEngine.load(
        source,
        device=settings.device,
        offload=settings.offload,
        compile_mode=settings.compile,
        attention=settings.attention,
        linear=settings.linear,
        loras=LoraSettings(settings.lora_dir, settings.lora_cache, settings.lora_max_rank),
    )


def _hunyuan_here(settings: Settings) -> tuple[ModelSource | None, str]:
    """The weights hunyuan would run here, or None and the reason it cannot."""
    missing = _missing_packages()
    if missing:
        return None, f"{', '.join(missing)} not installed"
    try:
        source = resolve_model(settings.hunyuan_model)
    except WeightsError as exc:
        return None, exc.message
    if source.is_tiny:
        return source, ""  # asked for by name: a test or smoke run, on any device
    from framecast.engines.hunyuan import cuda_available

    if settings.device == "auto" and not cuda_available():
        return None, "torch sees no CUDA GPU (a 13B video model on the CPU would take days)"
    return source, ""
