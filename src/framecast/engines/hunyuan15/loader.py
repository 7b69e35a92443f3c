"""Finding and loading the HunyuanVideo 1.5 image-to-video engine for a worker.

Imports no torch until an engine is actually loaded: :func:`availability` costs a package and
directory look-up. ``FRAMECAST_HUNYUAN_MODEL=tiny-random`` selects the tiny model for this model
too, unless ``FRAMECAST_HUNYUAN15_MODEL`` is set, so one setting runs every Hunyuan model's tiny
stand-in end to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framecast.engines.base import EngineUnavailable
from framecast.engines.hunyuan.loader import missing_packages
from framecast.engines.hunyuan15.weights import (
    TINY_RANDOM,
    ModelSource,
    WeightsError,
    resolve_model,
)

if TYPE_CHECKING:
    from framecast.engines.base import Engine
    from framecast.settings import Settings


def model_spec(settings: Settings) -> str:
    """What this worker's ``FRAMECAST_HUNYUAN15_MODEL`` effectively is."""
    own = "hunyuan15_model" in settings.model_fields_set  # given, not the default
    if settings.hunyuan_model.strip() == TINY_RANDOM and not own:
        return TINY_RANDOM
    return settings.hunyuan15_model


def availability(settings: Settings) -> str | None:
    """None if HunyuanVideo 1.5 can run here (its packages, a GPU and its weights), else why not."""
    missing = missing_packages()
    if missing:
        return f"{', '.join(missing)} not installed"
    try:
        source = resolve_model(model_spec(settings))
    except WeightsError as exc:
        return exc.message
    if source.is_tiny:
        return None  # asked for by name: a test or smoke run, on any device
    from framecast.engines.hunyuan import cuda_available

    if settings.device == "auto" and not cuda_available():
        return "torch sees no CUDA GPU (an 8.3B video model on the CPU would take days)"
    return None


def load(settings: Settings, source: ModelSource | None = None) -> Engine:
    """The HunyuanVideo 1.5 engine, loaded as the settings say, or a clear EngineUnavailable."""
    missing = missing_packages()
    if missing:
        raise EngineUnavailable(
            f"FRAMECAST_ENGINE=hunyuan needs {', '.join(missing)}; install framecast with its "
            "hunyuan extra (pip install 'framecast[hunyuan]') and a torch build for your GPU"
        )
    if source is None:
        source = resolve_model(model_spec(settings))  # before importing torch: fail fast
    from framecast.engines.hunyuan15.engine import Hunyuan15Engine

    return Hunyuan15Engine.load(
        source,
        device=settings.device,
        offload=settings.offload,
        compile_mode=settings.compile,
    )
