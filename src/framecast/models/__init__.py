"""The models this server serves, one module each; this registry is the only list of them.

Adding a model is adding a module with its :class:`~framecast.models.base.ModelSpec` and one
line below, or, outside this package, naming the module in ``FRAMECAST_MODEL_PLUGINS``. Everything else (routes, ``/v1/models``, OpenAPI, ``framecast generate``, the
workers' ``serves``) reads :func:`all_models`.
"""

from __future__ import annotations

import importlib

from framecast.models.base import ModelInput, ModelSpec

__all__ = ["ModelInput", "ModelSpec", "UnknownModel", "all_models", "get_model", "register"]

_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


class UnknownModel(LookupError):
    pass


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model (the built-in ones are added on first use; tests may add their own)."""
    if spec.id in _REGISTRY and _REGISTRY[spec.id] is not spec:
        raise ValueError(f"model {spec.id} is declared twice")
    _REGISTRY[spec.id] = spec
    return spec


def _builtin() -> None:
    # Imported on first use, not at import: a declaration module imports its input schema's
    # dependencies, and `framecast.models.base` must stay importable on its own.
    global _loaded
    if _loaded:
        return
    from framecast.models import hunyuan15_i2v, hunyuan_i2v
    from framecast.settings import get_settings

    _loaded = True
    for module in (hunyuan_i2v, hunyuan15_i2v):
        register(module.SPEC)
    for name in get_settings().model_plugins:
        try:
            plugin = importlib.import_module(name)
            spec = plugin.SPEC
        except (ImportError, AttributeError) as exc:
            raise UnknownModel(
                f"FRAMECAST_MODEL_PLUGINS: cannot load a model from {name!r} (a module with a "
                f"SPEC = ModelSpec(...)): {type(exc).__name__}: {exc}"
            ) from exc
        register(spec)


def all_models() -> list[ModelSpec]:
    _builtin()
    return list(_REGISTRY.values())


def get_model(model_id: str) -> ModelSpec:
    _builtin()
    try:
        return _REGISTRY[model_id]
    except KeyError:
        raise UnknownModel(
            f"unknown model '{model_id}'; this server has {', '.join(_REGISTRY)}"
        ) from None
