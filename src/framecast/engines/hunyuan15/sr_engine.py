"""The 1.5 engine's super-resolution stage: which SR checkpoints a worker has, how a request
with ``super_resolution`` runs, and what its result records.

The stage itself is :mod:`.sr`; this module is what the engine needs around it, kept out of
``engine.py``: loading the checkpoints (``FRAMECAST_HUNYUAN15_SR_MODEL``, or tiny ones beside
the tiny model), the request's plan, the offload and memory rules (the base pass's, applied
to the SR models too), the progress phases and the timings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import torch

from framecast.engines.base import GenerationRequest, Hooks
from framecast.engines.hunyuan15 import sr
from framecast.engines.hunyuan15.sr import SrModels
from framecast.engines.hunyuan15.weights import SR_SETTING, resolve_sr, sr_missing_files
from framecast.errors import InputError
from framecast.models.hunyuan15_i2v import MODEL_ID, SR_CHECKPOINTS, SuperResolution, sr_size

if TYPE_CHECKING:
    from framecast.engines.hunyuan15.pipeline import Conditions, FramecastHunyuan15Pipeline

log = logging.getLogger("framecast.engines.hunyuan15")

BASE_PHASE: Final = "denoising_base"
"""The base pass's denoising phase in a request with an SR stage (``denoising`` without)."""
SR_PHASE: Final = "super_resolution"


def stage_name(base_resolution: str) -> str:
    """How a worker advertises the SR stage from ``base_resolution`` (its checkpoint's name)."""
    return next(c.name for c in SR_CHECKPOINTS if c.base_resolution == base_resolution)


def load_stages(
    spec: str, resolutions: tuple[str, ...], tiny: bool, dtype: torch.dtype
) -> dict[str, SrModels]:
    """The SR checkpoints for ``resolutions`` (the base resolutions this engine runs), by base
    resolution: tiny random ones for the tiny model, else those ``spec`` holds. A checkpoint
    that is not there is no error: the worker runs without that stage, and says so."""
    wanted = [c for c in SR_CHECKPOINTS if c.base_resolution in resolutions]
    if tiny:
        from framecast.engines.hunyuan15.tiny import build_tiny_sr

        return {c.base_resolution: build_tiny_sr(c) for c in wanted}
    root = resolve_sr(spec)
    stages: dict[str, SrModels] = {}
    for checkpoint in wanted:
        missing = sr_missing_files(root, checkpoint) if root is not None else ["the folder"]
        if missing:
            log.info(
                "no super-resolution from %s (%s=%s lacks %s); `framecast weights download "
                "--model %s --checkpoint %s` fetches it",
                checkpoint.base_resolution,
                SR_SETTING,
                spec,
                ", ".join(missing),
                MODEL_ID,
                checkpoint.name,
            )
            continue
        assert root is not None
        stages[checkpoint.base_resolution] = sr.load_models(root, checkpoint, dtype)
    return stages


class RenamedPhase:
    """Hooks that report one phase under another name (the base pass's steps as
    :data:`BASE_PHASE`, so progress stays monotonic across both stages)."""

    def __init__(self, hooks: Hooks, renames: Mapping[str, str]) -> None:
        self.hooks = hooks
        self.renames = renames

    def progress(self, step: int, total: int, phase: str) -> None:
        self.hooks.progress(step, total, self.renames.get(phase, phase))

    def raise_if_cancelled(self) -> None:
        self.hooks.raise_if_cancelled()


@dataclass
class SrRun:
    """What one request's SR stage ran, for its result's metadata."""

    stage: SuperResolution
    request: GenerationRequest
    seconds: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        c = self.stage.checkpoint
        return {
            "super_resolution": {
                "checkpoint": c.version,
                "from": "x".join(map(str, self.stage.base_size)),
                "to": f"{self.request.width}x{self.request.height}",
                "num_inference_steps": c.num_inference_steps,
                "flow_shift": c.flow_shift,
                "guidance_scale": c.guidance_scale,
                "noise_strength": c.noise_strength,
            },
            "stage_seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


class SuperResolver:
    """An engine's SR checkpoints (by base resolution) and the stage's runs."""

    def __init__(self, stages: Mapping[str, SrModels], device: torch.device, offload: str):
        self.stages = dict(stages)
        self.device = device
        self.offload = offload
        self.last: SrRun | None = None
        for models in self.stages.values():
            sr.place_models(models, device, offload)

    @property
    def names(self) -> tuple[str, ...]:
        """The stages a worker advertises (``720p_sr``, ...)."""
        return tuple(c.name for c in SR_CHECKPOINTS if c.base_resolution in self.stages)

    def resident_bytes(self) -> int:
        """GPU memory the SR transformers hold between requests (offload=none only)."""
        if self.offload != "none" or self.device.type != "cuda":
            return 0
        return sum(m.weight_bytes for m in self.stages.values())

    def plan(self, request: GenerationRequest) -> tuple[GenerationRequest, SrRun | None]:
        """The base pass's request and the SR run, for a request with ``super_resolution``;
        the request itself and None without. An InputError where this engine cannot."""
        stage = request.options.get("super_resolution")
        if stage is None:
            return request, None
        if not isinstance(stage, SuperResolution):
            raise InputError(
                "super_resolution must come from the model's input", field="super_resolution"
            )
        checkpoint = stage.checkpoint
        if checkpoint.base_resolution not in self.stages:
            raise InputError(
                f"this worker has no {checkpoint.version} weights for super_resolution from "
                f"{checkpoint.base_resolution}; set {SR_SETTING} (`framecast weights download "
                f"--model {MODEL_ID} --checkpoint {checkpoint.name}`)",
                field="super_resolution",
            )
        expected = sr_size(*stage.base_size, checkpoint)
        if (request.width, request.height) != expected:
            raise InputError(
                f"super_resolution from {stage.base_size[0]}x{stage.base_size[1]} makes "
                f"{expected[0]}x{expected[1]}, not {request.width}x{request.height}",
                field="super_resolution",
            )
        width, height = stage.base_size
        base = replace(request, width=width, height=height)
        self.last = SrRun(stage, request)
        return base, self.last

    def run(
        self,
        pipe: FramecastHunyuan15Pipeline,
        run: SrRun,
        lq: torch.Tensor,
        conditions: Conditions,
        hooks: Hooks,
    ) -> torch.Tensor:
        """The SR stage on the base pass's latent ``lq``: the SR latent, not decoded."""
        models = self.stages[run.stage.checkpoint.base_resolution]
        request = run.request
        started = time.perf_counter()
        hooks.progress(0, run.stage.checkpoint.num_inference_steps, SR_PHASE)
        if self.offload == "model":
            pipe.maybe_free_model_hooks()  # type: ignore[no-untyped-call]  # the base transformer out
        # The official crop at the SR size: Lanczos to cover, centre crop.
        image = pipe.video_processor.resize(
            request.image.convert("RGB"),
            height=request.height,
            width=request.width,
            resize_mode="crop",
        )

        def on_step(done: int, total: int) -> None:
            hooks.progress(done, total, SR_PHASE)
            hooks.raise_if_cancelled()

        with torch.inference_mode(), sr.on_device(models, self.device, self.offload):
            inputs = sr.prepare(
                pipe,
                models,
                lq,
                image,
                seed=request.seed,
                width=request.width,
                height=request.height,
                num_frames=request.num_frames,
                device=self.device,
            )
            latents = sr.denoise(models, inputs, conditions, pipe.scheduler.config, on_step)
        run.seconds["super_resolution"] = time.perf_counter() - started
        return latents
