"""Engines: the interface (:mod:`.base`) and the engines that implement it.

Nothing here reads settings or builds an engine: :mod:`.selection` chooses and loads a worker's
engines, each engine's own package imports torch only when it is loaded.
"""

from __future__ import annotations

from framecast.engines.base import (
    Cancelled,
    Engine,
    EngineUnavailable,
    GenerationRequest,
    Hooks,
    NullHooks,
)

__all__ = [
    "Cancelled",
    "Engine",
    "EngineUnavailable",
    "GenerationRequest",
    "Hooks",
    "NullHooks",
]
