"""Finding and loading the HunyuanVideo-I2V engine for a worker (``FRAMECAST_ENGINE=hunyuan``).

Imports no torch until an engine is actually loaded: the engine choice at start-up asks
:func:`availability` first, which costs a directory listing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING

from framecast.engines.base import EngineNeedsSetup, NotRunnable
from framecast.engines.hunyuan.attention_kernels import missing_attention_package
from framecast.engines.hunyuan.loras import LoraSettings
from framecast.engines.hunyuan.weights import ModelSource, WeightsError, resolve_model
from framecast.models.hunyuan_i2v import checkpoint

if TYPE_CHECKING:
    from framecast.engines.base import Engine
    from framecast.settings import Settings

PACKAGES = ("torch", "diffusers", "transformers")

INSTALL = (
    "install them: `make gpu` in a framecast checkout, or `pip install torch` (the build for "
    "your GPU) then `pip install 'framecast[hunyuan]'`"
)
"""What the Hunyuan engines' missing packages take (the Makefile's ``gpu`` target does both)."""


def missing_packages() -> list[str]:
    return [m for m in PACKAGES if importlib.util.find_spec(m) is None]


def require_packages(settings: Settings) -> None:
    """Raise a clear EngineNeedsSetup where a package the Hunyuan engines need is missing,
    the chosen attention kernel's included."""
    missing = missing_packages()
    if missing:
        raise EngineNeedsSetup(
            f"FRAMECAST_ENGINE=hunyuan needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; {INSTALL}"
        )
    problem = missing_attention_package(settings.attention)
    if problem is not None:
        raise EngineNeedsSetup(problem)


def availability_of(
    settings: Settings, resolve: Callable[[], ModelSource], what: str
) -> NotRunnable | None:
    """None if the model that ``resolve`` finds can run here (its packages, a GPU and its
    weights), else why not; ``what`` says in that reason what would be slow on a CPU."""
    missing = missing_packages()
    if missing:
        return NotRunnable(f"{', '.join(missing)} not installed", install=INSTALL)
    try:
        source = resolve()
    except WeightsError as exc:
        return NotRunnable(exc.message)
    if source.is_tiny:
        return None  # asked for by name: a test or smoke run, on any device
    from framecast.engines.hunyuan import cuda_available

    if settings.device == "auto" and not cuda_available():
        return NotRunnable(f"torch sees no CUDA GPU ({what} on the CPU would take days)")
    return None


def availability(settings: Settings) -> NotRunnable | None:
    """None if HunyuanVideo-I2V can run here (its packages, a GPU and its weights), else why not."""
    return availability_of(
        settings, lambda: resolve_model(checkpoint(settings)), "a 13B video model"
    )


def load(settings: Settings, source: ModelSource | None = None) -> Engine:
    """The HunyuanVideo-I2V engine, loaded as the settings say, or a clear EngineUnavailable."""
    require_packages(settings)
    if source is None:
        source = resolve_model(checkpoint(settings))  # before importing torch: fail fast
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
