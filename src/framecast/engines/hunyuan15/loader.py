"""Finding and loading the HunyuanVideo 1.5 image-to-video engine for a worker.

Imports no torch until an engine is actually loaded: :func:`availability` costs a package and
directory look-up. ``FRAMECAST_HUNYUAN_MODEL=tiny-random`` selects the tiny model for this model
too, unless ``FRAMECAST_HUNYUAN15_MODEL`` is set, so one setting runs every Hunyuan model's tiny
stand-in end to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framecast.engines.hunyuan.loader import availability_of, require_packages
from framecast.engines.hunyuan.loras import LoraSettings
from framecast.engines.hunyuan15.weights import TINY_RANDOM, ModelSource, resolve_model
from framecast.models.hunyuan15_i2v import DEFAULT_CHECKPOINT, SR_REPO

if TYPE_CHECKING:
    from framecast.engines.base import Engine, NotRunnable
    from framecast.settings import Settings


def model_spec(settings: Settings) -> str:
    """What this worker's ``FRAMECAST_HUNYUAN15_MODEL`` effectively is."""
    own = settings.hunyuan15_model
    if own is None and (settings.hunyuan_model or "").strip() == TINY_RANDOM:
        return TINY_RANDOM
    return own or DEFAULT_CHECKPOINT


def availability(settings: Settings) -> NotRunnable | None:
    """None if HunyuanVideo 1.5 can run here (its packages, a GPU and its weights), else why
    not."""
    return availability_of(
        settings, lambda: resolve_model(model_spec(settings)), "an 8.3B video model"
    )


def load(settings: Settings, source: ModelSource | None = None) -> Engine:
    """The HunyuanVideo 1.5 engine, loaded as the settings say, or a clear EngineUnavailable."""
    require_packages(settings)
    if source is None:
        source = resolve_model(model_spec(settings))  # before importing torch: fail fast
    from framecast.engines.hunyuan15.engine import Hunyuan15Engine

    return Hunyuan15Engine.load(
        source,
        device=settings.device,
        offload=settings.offload,
        compile_mode=settings.compile,
        attention=settings.attention,
        linear=settings.linear,
        memory_check=settings.memory_check,
        loras=LoraSettings.of(settings),
        sr_model=settings.hunyuan15_sr_model or SR_REPO,
    )
