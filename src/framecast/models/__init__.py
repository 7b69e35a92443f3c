"""The models this server serves, one module each; :func:`all_models` is the only list of them.

Adding a model is adding a module with its :class:`~framecast.models.base.ModelSpec` and one
line in :func:`builtin_models`, or, outside this package, naming the module in
``FRAMECAST_MODEL_PLUGINS``. Everything else (routes, ``/v1/models``, OpenAPI, ``framecast
generate``, the workers' ``serves``) reads :func:`all_models` with the settings it was given:
there is no process-wide list that settings built elsewhere could silently fail to reach.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING

from framecast.models.base import ModelInput, ModelSpec

if TYPE_CHECKING:
    from framecast.settings import Settings

__all__ = [
    "ModelInput",
    "ModelSpec",
    "UnknownModel",
    "all_models",
    "builtin_models",
    "find_model",
    "get_model",
]


class UnknownModel(LookupError):
    pass


@lru_cache(maxsize=1)
def _builtin() -> tuple[ModelSpec, ...]:
    # Imported on first use, not at import: a declaration module imports its input schema's
    # dependencies, and `framecast.models.base` must stay importable on its own.
    from framecast.models import hunyuan15_i2v, hunyuan_i2v

    return (hunyuan_i2v.SPEC, hunyuan15_i2v.SPEC)


def builtin_models() -> list[ModelSpec]:
    """The models framecast declares itself, without plug-ins (for code that has no server
    settings, such as the client's guess at a model's image field)."""
    return list(_builtin())


@lru_cache(maxsize=8)
def _plugins(names: tuple[str, ...]) -> tuple[ModelSpec, ...]:
    # Cached by the names: a module is imported once, and each call gets the same specs.
    specs = []
    for name in names:
        try:
            spec = importlib.import_module(name).SPEC
        except (ImportError, AttributeError) as exc:
            raise UnknownModel(
                f"FRAMECAST_MODEL_PLUGINS: cannot load a model from {name!r} (a module with a "
                f"SPEC = ModelSpec(...)): {type(exc).__name__}: {exc}"
            ) from exc
        specs.append(spec)
    return tuple(specs)


def all_models(settings: Settings) -> list[ModelSpec]:
    """The built-in models, then those of ``settings.model_plugins``, in that order."""
    specs: dict[str, ModelSpec] = {}
    for spec in (*_builtin(), *_plugins(tuple(settings.model_plugins))):
        if spec.id in specs and specs[spec.id] is not spec:
            raise ValueError(f"model {spec.id} is declared twice")
        specs[spec.id] = spec
    return list(specs.values())


def find_model(model_id: str, models: list[ModelSpec]) -> ModelSpec:
    """``model_id`` among ``models``; :class:`UnknownModel`, naming those there are, otherwise."""
    for spec in models:
        if spec.id == model_id:
            return spec
    raise UnknownModel(
        f"unknown model '{model_id}'; this server has {', '.join(s.id for s in models)}"
    )


def get_model(model_id: str, settings: Settings) -> ModelSpec:
    return find_model(model_id, all_models(settings))
