"""Which engine serves which model on this worker (``FRAMECAST_ENGINE``, ``FRAMECAST_MODELS``).

Two steps, so a worker can say what it serves before it spends minutes loading weights:
:func:`plan_engines` decides (cheap: package and weight look-ups), :func:`load_engines` loads.

- ``preview``: the CPU preview engine serves every model, at each model's sizes.
- ``hunyuan``: each model's real engine. With ``FRAMECAST_MODELS`` unset, the models whose
  weights are here; with it set, every model named, or a start-up error saying what is missing.
- ``auto``: the real engine for each model that can run here; if none can, the preview engine
  for all, saying why. Unless ``FRAMECAST_MODELS`` names them, the models that cannot run here
  are left to other workers rather than served by the preview engine on a GPU machine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from framecast.engines.base import Engine, EngineNeedsSetup, EngineUnavailable, NotRunnable
from framecast.models import ModelSpec, UnknownModel, all_models, get_model
from framecast.settings import Settings

log = logging.getLogger("framecast.engines")

EngineKind = Literal["preview", "real"]


def wanted_models(settings: Settings) -> list[ModelSpec]:
    if not settings.models:
        return all_models(settings)
    try:
        return [get_model(model_id, settings) for model_id in settings.models]
    except UnknownModel as exc:
        raise EngineNeedsSetup(f"FRAMECAST_MODELS: {exc}") from exc


def plan_engines(settings: Settings) -> dict[str, EngineKind]:
    """model id -> the kind of engine that will serve it here."""
    wanted = wanted_models(settings)
    if settings.engine == "preview":
        return dict.fromkeys((spec.id for spec in wanted), "preview")
    reasons = {spec.id: _why_not_real(spec, settings) for spec in wanted}
    runnable = [model_id for model_id, why in reasons.items() if why is None]
    missing = {model_id: why for model_id, why in reasons.items() if why is not None}
    if settings.engine == "hunyuan":
        if missing and (settings.models or not runnable):
            installs = [why.install for why in missing.values() if why.install]
            # A package is missing: no retry installs it, so the worker fails at once.
            error = EngineNeedsSetup if installs else EngineUnavailable
            raise error(f"FRAMECAST_ENGINE=hunyuan cannot run {_reasons(missing)}")
    elif not runnable:
        log.warning(
            "FRAMECAST_ENGINE=auto: using the CPU preview engine, whose videos are camera "
            "moves over the input image, not model output, because %s",
            _reasons(missing),
        )
        return dict.fromkeys(reasons, "preview")
    elif settings.models:
        for model_id, why in missing.items():
            log.warning(
                "FRAMECAST_ENGINE=auto: %s runs on the preview engine: %s",
                model_id,
                _reasons({model_id: why}),
            )
        return {m: "preview" if m in missing else "real" for m in reasons}
    for model_id, why in missing.items():
        log.warning(
            "not serving %s on this worker (other workers may): %s",
            model_id,
            _reasons({model_id: why}),
        )
    return dict.fromkeys(runnable, "real")


def _reasons(missing: Mapping[str, NotRunnable]) -> str:
    """Why the models cannot run here, each reason once with the models it holds back, then
    the install commands of those that are a missing package."""
    models: dict[str, list[str]] = {}
    for model_id, why in missing.items():
        models.setdefault(why.reason, []).append(model_id)
    told = "; ".join(f"{', '.join(ids)}: {reason}" for reason, ids in models.items())
    installs = dict.fromkeys(why.install for why in missing.values() if why.install)
    return "; ".join([told, *filter(None, installs)])


def load_engines(settings: Settings, plan: Mapping[str, EngineKind]) -> dict[str, Engine]:
    """The engines of ``plan``, loaded; one preview engine serves all the models it is for."""
    engines: dict[str, Engine] = {}
    preview: Engine | None = None
    for model_id, kind in plan.items():
        if kind == "preview":
            if preview is None:
                from framecast.engines.preview import PreviewEngine

                preview = PreviewEngine(step_seconds=settings.preview_step_seconds)
            engines[model_id] = preview
        else:
            real = get_model(model_id, settings).real_engine
            assert real is not None  # plan_engines chose it
            engine = real.load(settings)
            if not isinstance(engine, Engine):
                raise TypeError(f"{model_id}: its engine loader returned {engine!r}, not an Engine")
            engines[model_id] = engine
    return engines


def load_engine(settings: Settings, model_id: str) -> Engine:
    """The one engine ``framecast generate`` runs for ``model_id``."""
    spec = get_model(model_id, settings)
    plan = plan_engines(settings.model_copy(update={"models": [spec.id]}))
    return load_engines(settings, plan)[spec.id]


def _why_not_real(spec: ModelSpec, settings: Settings) -> NotRunnable | None:
    if spec.real_engine is None:
        return NotRunnable("it has no engine but the preview one")
    return spec.real_engine.availability(settings)
