"""Finding and loading the HunyuanVideo-I2V engine for a worker (``FRAMECAST_ENGINE=hunyuan``).

Imports no torch until an engine is actually loaded: the engine choice at start-up asks
:func:`availability` first, which costs a directory listing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING

from framecast.engines.base import EngineUnavailable
from framecast.engines.hunyuan.loras import LoraSettings
from framecast.engines.hunyuan.weights import ModelSource, WeightsError, resolve_model

if TYPE_CHECKING:
    from framecast.engines.base import Engine
    from framecast.settings import Settings

PACKAGES = ("torch", "diffusers", "transformers")


def missing_packages() -> list[str]:
    return [m for m in PACKAGES if importlib.util.find_spec(m) is None]


def require_packages() -> None:
    """Raise a clear EngineUnavailable where a package the Hunyuan engines need is missing."""
    missing = missing_packages()
    if missing:
        raise EngineUnavailable(
            f"FRAMECAST_ENGINE=hunyuan needs {', '.join(missing)}; install framecast with its "
            "hunyuan extra (pip install 'framecast[hunyuan]') and a torch build for your GPU"
        )


def availability_of(
    settings: Settings, resolve: Callable[[], ModelSource], what: str
) -> str | None:
    """None if the model that ``resolve`` finds can run here (its packages, a GPU and its
    weights), else why not; ``what`` says in that reason what would be slow on a CPU."""
    missing = missing_packages()
    if missing:
        return f"{', '.join(missing)} not installed"
    try:
        source = resolve()
    except WeightsError as exc:
        return exc.message
    if source.is_tiny:
        return None  # asked for by name: a test or smoke run, on any device
    from framecast.engines.hunyuan import cuda_available

    if settings.device == "auto" and not cuda_available():
        return f"torch sees no CUDA GPU ({what} on the CPU would take days)"
    return None


def availability(settings: Settings) -> str | None:
    """None if HunyuanVideo-I2V can run here (its packages, a GPU and its weights), else why not."""
    return availability_of(
        settings, lambda: resolve_model(settings.hunyuan_model), "a 13B video model"
    )


def load(settings: Settings, source: ModelSource | None = None) -> Engine:
    """The HunyuanVideo-I2V engine, loaded as the settings say, or a clear EngineUnavailable."""
    require_packages()
    if source is None:
        source = resolve_model(settings.hunyuan_model)  # before importing torch: fail fast
    from framecast.engines.hunyuan.engine import HunyuanEngine

    return HunyuanEngine.load(
        source,
        device=settings.device,
        offload=settings.offload,
        compile_mode=settings.compile,
        attention=settings.attention,
        linear=settings.linear,
        loras=LoraSettings.of(settings),
    )
