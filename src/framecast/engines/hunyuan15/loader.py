"""Finding and loading the HunyuanVideo 1.5 image-to-video engine for a worker.

Imports no torch until an engine is actually loaded: :func:`availability` costs a package and
directory look-up. ``FRAMECAST_HUNYUAN_MODEL=tiny-random`` selects the tiny model for this model
too, unless ``FRAMECAST_HUNYUAN15_MODEL`` is set, so one setting runs every Hunyuan model's tiny
stand-in end to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framecast.engines.base import EngineUnavailable
from framecast.engines.hunyuan.loader import availability_of, require_packages
from framecast.engines.hunyuan15.weights import TINY_RANDOM, ModelSource, resolve_model

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
    """None if HunyuanVideo 1.5 can run here (its packages, a GPU and its weights, settings it
    supports), else why not."""
    unsupported = unsupported_settings(settings)
    if unsupported is not None:
        return unsupported
    return availability_of(
        settings, lambda: resolve_model(model_spec(settings)), "an 8.3B video model"
    )


def unsupported_settings(settings: Settings) -> str | None:
    """Why this worker's settings rule 1.5 out, if they do: so a worker left to serve every
    model it can (``FRAMECAST_MODELS`` unset) serves the others and says why not this one, and
    one told to serve it stops at start saying so."""
    if settings.linear != "bf16":
        return (
            f"FRAMECAST_LINEAR={settings.linear} is not supported by HunyuanVideo 1.5 yet (only "
            "by HunyuanVideo-I2V); set FRAMECAST_LINEAR=bf16 on the workers that serve it"
        )
    return None


def load(settings: Settings, source: ModelSource | None = None) -> Engine:
    """The HunyuanVideo 1.5 engine, loaded as the settings say, or a clear EngineUnavailable."""
    require_packages()
    unsupported = unsupported_settings(settings)
    if unsupported is not None:
        raise EngineUnavailable(unsupported)
    if source is None:
        source = resolve_model(model_spec(settings))  # before importing torch: fail fast
    from framecast.engines.hunyuan15.engine import Hunyuan15Engine

    return Hunyuan15Engine.load(
        source,
        device=settings.device,
        offload=settings.offload,
        compile_mode=settings.compile,
        attention=settings.attention,
        memory_check=settings.memory_check,
    )
