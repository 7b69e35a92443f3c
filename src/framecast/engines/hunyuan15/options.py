"""The options of a HunyuanVideo 1.5 image-to-video request, and their defaults. No torch here.

A request's options are what it set (``ImageToVideo15Input.model_options()``); what it left
out (None) is the loaded checkpoint's default, known only once the weights are loaded, as the
official code takes it from its ``PIPELINE_CONFIGS`` entry: the guidance scale from the
checkpoint's guider config, the flow shift from its scheduler config (the hunyuanvideo-community
conversions carry the official values), and the steps of its kind from the model's checkpoint
table (:data:`~framecast.models.hunyuan15_i2v.CHECKPOINTS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, get_args

from framecast.engines.base import GenerationRequest
from framecast.errors import InputError
from framecast.models.base import StepCache, step_cache_options
from framecast.models.hunyuan15_i2v import CHECKPOINTS, NEGATIVE_PROMPT, STEPS_OF_KIND
from framecast.models.request import LoraChoice

if TYPE_CHECKING:
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
        HunyuanVideo15ImageToVideoPipeline,
    )


@dataclass(frozen=True)
class Defaults:
    """What a checkpoint runs with when a request does not say."""

    num_inference_steps: int
    guidance_scale: float
    flow_shift: float
    distilled: str | None = None
    """``"cfg"`` (guidance in the weights), ``"step"`` (steps too, MeanFlow) or None."""

    @classmethod
    def of_pipeline(cls, pipe: HunyuanVideo15ImageToVideoPipeline) -> Defaults:
        """A loaded checkpoint's: guidance from its guider config, shift from its scheduler
        config (the hub conversions carry the official values), steps from its kind."""
        step_distilled = bool(pipe.transformer.config.use_meanflow)
        guidance = float(pipe.guider.guidance_scale)
        distilled = "step" if step_distilled else ("cfg" if math.isclose(guidance, 1.0) else None)
        return cls(
            num_inference_steps=STEPS_OF_KIND[distilled],
            guidance_scale=guidance,
            flow_shift=float(pipe.scheduler.config.shift),
            distilled=distilled,
        )


DEFAULT_CHECKPOINT: Final = Defaults(
    CHECKPOINTS[0].num_inference_steps,
    CHECKPOINTS[0].guidance_scale,
    CHECKPOINTS[0].flow_shift,
    CHECKPOINTS[0].distilled,
)
"""The default checkpoint's defaults, for a request built without an engine."""


@dataclass(frozen=True)
class Options:
    """The 1.5 options a request may set in ``request.options``; absent or None: the default.

    - ``num_inference_steps``: denoising steps;
    - ``guidance_scale``: classifier-free guidance (1 for distilled checkpoints, where 1 means
      one transformer pass per step and no negative prompt);
    - ``flow_shift``: the flow-match scheduler's shift;
    - ``negative_prompt``: what the unconditional pass is conditioned on; None here when
      guidance is off, since nothing uses it then;
    - ``step_cache``, ``step_cache_threshold``: the step cache (engines/hunyuan/cache.py) and
      its threshold, defaulted with a cache and None without one, as the input gives them;
    - ``loras``: the LoRAs to apply, with their scales (engines/hunyuan/loras.py).

    Each default is the checkpoint's (:class:`Defaults`; the official values are in
    :data:`~framecast.models.hunyuan15_i2v.CHECKPOINTS`).
    """

    num_inference_steps: int
    guidance_scale: float
    flow_shift: float
    negative_prompt: str | None
    step_cache: StepCache | None = None
    step_cache_threshold: float | None = None
    loras: tuple[LoraChoice, ...] = ()

    @property
    def cfg(self) -> bool:
        # ClassifierFreeGuidance's own rule (its default formulation): a scale of 1 is off.
        return not math.isclose(self.guidance_scale, 1.0)

    @classmethod
    def of(cls, request: GenerationRequest, defaults: Defaults = DEFAULT_CHECKPOINT) -> Options:
        given: Mapping[str, Any] = request.options

        def option(name: str, default: Any) -> Any:
            value = given.get(name)
            return default if value is None else value

        steps = int(option("num_inference_steps", defaults.num_inference_steps))
        guidance = float(option("guidance_scale", defaults.guidance_scale))
        shift = float(option("flow_shift", defaults.flow_shift))
        if steps < 1:
            raise InputError(
                f"num_inference_steps must be at least 1, got {steps}", field="num_inference_steps"
            )
        if not shift > 0:
            raise InputError(f"flow_shift must be positive, got {shift}", field="flow_shift")
        kind, threshold = given.get("step_cache"), given.get("step_cache_threshold")
        if kind not in (None, *get_args(StepCache)):
            raise InputError(
                f"step_cache must be one of {get_args(StepCache)} or None, got {kind!r}",
                field="step_cache",
            )
        if threshold is not None and kind is None:
            raise InputError(
                "step_cache_threshold only has an effect with a step cache",
                field="step_cache_threshold",
            )
        cache = step_cache_options(kind, None if threshold is None else float(threshold))
        options = cls(steps, guidance, shift, str(option("negative_prompt", NEGATIVE_PROMPT)))
        if not options.cfg:
            options = replace(options, negative_prompt=None)
        return replace(options, **cache, loras=tuple(given.get("loras") or ()))
