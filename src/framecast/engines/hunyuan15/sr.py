"""HunyuanVideo 1.5's super-resolution stage: the official second pass, on diffusers' parts.

diffusers 0.42 has no SR pipeline; this module is one, written from the official one
(Tencent-Hunyuan/HunyuanVideo-1.5, ``hyvideo/pipelines/hunyuan_video_sr_pipeline.py``), with
diffusers' transformer class (the SR checkpoints are the 8.3B architecture with 98 input
channels), its flow-match scheduler and the base pipeline's VAE and SigLIP encoder. What
diffusers has no part for, the latent upsampler, is :mod:`.upsampler`.

The official stage, given the base pass's final latent ``lq`` (B, 32, F, h, w):

1. The video size: the SR resolution's bucket nearest the base video's aspect
   (:func:`framecast.models.hunyuan15_i2v.sr_size`); its latent grid is H x W.
2. ``lq`` is resized to H x W bilinearly frame by frame (``align_corners=False``), refined by the
   upsampler in float32, and noised: ``(1 - s) lq + s n`` with ``s`` the noise strength, 0.7.
3. The transformer's input is the noise latent (drawn as the base pass draws its own) followed
   by a condition of 2 x 32 + 2 channels: the image-to-video condition at the SR size (the
   reference image, cropped to H x W and VAE-encoded, in the first latent frame, zeros after;
   then a mask of ones on the first frame) and the low-resolution one (the noised ``lq``, then
   a mask of ones). From the first step whose timestep is below ``1000 s`` on, the
   low-resolution half is zeros, its mask too.
4. Steps of the SR checkpoint (6 or 8) with its flow shift (2) and no guidance (1): one pass a
   step, on the prompt's embeddings; SigLIP sees the image cropped to the SR size.

The official stage encodes the prompt again, with the same encoders and the same text, so gets
the embeddings the base pass had: we reuse the base pass's (its conditional half, the SR stage
having no guidance) rather than run the 7B text encoder twice.

Where we choose: the official code draws the noise added to ``lq`` from torch's global
generator; we draw it, after the starting noise, from the request's seeded CPU generator, so
a seed gives one video (as the base pass does for its own noise).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image
import torch
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15Transformer3DModel,
)
from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
)
from torch import nn
from torch.nn import functional as F

from framecast.models.hunyuan15_i2v import SrCheckpoint

if TYPE_CHECKING:
    from framecast.engines.hunyuan15.pipeline import Conditions, FramecastHunyuan15Pipeline

StepHook = Callable[[int, int], None]


@dataclass
class SrModels:
    """One SR checkpoint, loaded: its transformer (diffusers' class) and its upsampler."""

    checkpoint: SrCheckpoint
    transformer: HunyuanVideo15Transformer3DModel
    upsampler: nn.Module

    @property
    def weight_bytes(self) -> int:
        """The transformer's weights: GPU memory it holds where it stays on the GPU."""
        return sum(p.numel() * p.element_size() for p in self.transformer.parameters())


def upsample_latent(lq: torch.Tensor, grid: tuple[int, int], upsampler: nn.Module) -> torch.Tensor:
    """``lq`` (B, C, F, h, w) resized to ``grid`` (H, W) frame by frame, bilinearly, then refined
    by ``upsampler`` in float32 (as officially); returned in ``lq``'s dtype."""
    b, c, f, h, w = lq.shape
    frames = lq.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    frames = F.interpolate(frames.float(), size=grid, mode="bilinear", align_corners=False)
    resized = frames.reshape(b, f, c, *grid).permute(0, 2, 1, 3, 4)
    device = next(upsampler.parameters()).device
    refined: torch.Tensor = upsampler(resized.to(device))
    return refined.to(device=lq.device, dtype=lq.dtype)


def noised(latent: torch.Tensor, noise: torch.Tensor, strength: float) -> torch.Tensor:
    """The official ``add_noise_to_lq``: the latent moved ``strength`` of the way to noise."""
    return (1 - strength) * latent + strength * noise


def sr_condition(
    image_latents: torch.Tensor, image_mask: torch.Tensor, lq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The condition after the noise latent, and the same with the low-resolution half zeroed:
    [image-to-video latent, its mask, noised upsampled ``lq``, ones] along channels."""
    ones = torch.ones_like(lq[:, :1])
    condition = torch.cat([image_latents, image_mask, lq, ones], dim=1)
    bare = torch.cat([image_latents, image_mask, torch.zeros_like(lq), torch.zeros_like(ones)], 1)
    return condition, bare


def latent_grid(pipe: FramecastHunyuan15Pipeline, width: int, height: int) -> tuple[int, int]:
    factor = pipe.vae_scale_factor_spatial
    return height // factor, width // factor


@dataclass
class SrInputs:
    """What the SR loop starts from (the first step's transformer input is ``latents`` then
    ``condition``)."""

    latents: torch.Tensor
    condition: torch.Tensor
    bare_condition: torch.Tensor
    image_embeds: torch.Tensor


def prepare(
    pipe: FramecastHunyuan15Pipeline,
    models: SrModels,
    lq: torch.Tensor,
    image: PIL.Image.Image,
    *,
    seed: int,
    width: int,
    height: int,
    num_frames: int,
    device: torch.device,
) -> SrInputs:
    """The SR stage's starting latent and conditions for the base pass's latent ``lq``; ``image``
    is the request's image, cropped to ``width`` x ``height`` (the SR size)."""
    dtype = models.transformer.dtype
    generator = torch.Generator(device="cpu").manual_seed(seed)
    latents: torch.Tensor = pipe.prepare_latents(
        batch_size=1,
        num_channels_latents=pipe.num_channels_latents,
        height=height,
        width=width,
        num_frames=num_frames,
        dtype=dtype,
        device=device,
        generator=generator,
    )
    up = upsample_latent(
        lq.to(device=device, dtype=dtype), latent_grid(pipe, width, height), models.upsampler
    )
    lq_noise = torch.randn(up.shape, generator=generator, dtype=dtype).to(device)
    lq_noised = noised(up, lq_noise, models.checkpoint.noise_strength)
    image_latents, image_mask = pipe.prepare_cond_latents_and_mask(
        latents=latents, image=image, batch_size=1, height=height, width=width, dtype=dtype,
        device=device,
    )  # fmt: skip
    condition, bare = sr_condition(image_latents, image_mask, lq_noised)
    image_embeds = pipe.encode_image(image=image, batch_size=1, device=device, dtype=dtype)
    return SrInputs(latents, condition, bare, image_embeds)


def denoise(
    models: SrModels,
    inputs: SrInputs,
    conditions: Conditions,
    scheduler_config: Any,
    on_step: StepHook,
) -> torch.Tensor:
    """The SR checkpoint's steps from ``inputs``; the final latent (not decoded)."""
    sr = models.checkpoint
    transformer = models.transformer
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config, shift=sr.flow_shift)
    # The sigmas diffusers' 1.5 pipeline passes; shifted by the scheduler as the official
    # FlowMatchDiscreteScheduler shifts them, so the timesteps are the official ones.
    sigmas = np.linspace(1.0, 0.0, sr.num_inference_steps + 1)[:-1]
    device = inputs.latents.device
    scheduler.set_timesteps(sigmas=sigmas, device=device)
    timesteps = scheduler.timesteps
    latents = inputs.latents
    condition = inputs.condition
    for i, t in enumerate(timesteps):
        if t < 1000 * sr.noise_strength:  # official: the low-resolution latent drops out here
            condition = inputs.bare_condition
        model_input = torch.cat([latents, condition], dim=1)
        timestep = t.expand(1).to(model_input.dtype)
        timestep_r = None
        if transformer.config.get("use_meanflow"):
            following = timesteps[i + 1] if i + 1 < len(timesteps) else torch.zeros_like(t)
            timestep_r = following.expand(1).to(model_input.dtype)
        prediction = transformer(
            hidden_states=model_input,
            image_embeds=inputs.image_embeds,
            timestep=timestep,
            timestep_r=timestep_r,
            encoder_hidden_states=conditions.prompt_embeds,
            encoder_attention_mask=conditions.prompt_embeds_mask,
            encoder_hidden_states_2=conditions.prompt_embeds_2,
            encoder_attention_mask_2=conditions.prompt_embeds_mask_2,
            return_dict=False,
        )[0]
        latents = scheduler.step(prediction, t, latents, return_dict=False)[0]
        on_step(i + 1, len(timesteps))
    return latents


# -- where the SR models live ----------------------------------------------------------------


def place_models(models: SrModels, device: torch.device, offload: str) -> None:
    """Put the SR models where the base pipeline's offload mode puts its own: on the device
    (none), on the CPU until their stage (model), streamed block by block (group), or layer by
    layer (sequential). The upsampler is small: it visits the device for its call unless
    nothing is offloaded."""
    transformer = models.transformer
    if offload == "none":
        transformer.to(device=device)  # type: ignore[call-arg]  # diffusers wraps .to
        models.upsampler.to(device)
    elif offload == "group":
        # As place() does for the pipeline (engines/hunyuan/placement.py).
        transformer.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=True,
        )
    elif offload == "sequential":
        from accelerate import cpu_offload  # type: ignore[import-untyped]

        cpu_offload(transformer, execution_device=device)


@contextlib.contextmanager
def on_device(models: SrModels, device: torch.device, offload: str) -> Iterator[None]:
    """For the SR stage: the models an offload mode keeps on the CPU (the transformer with
    offload=model, the upsampler with any offload) move to the device, and back after."""
    visitors: list[nn.Module] = []
    if offload != "none":
        visitors.append(models.upsampler)
    if offload == "model":
        visitors.append(models.transformer)
    for module in visitors:
        module.to(device)
    try:
        yield
    finally:
        for module in visitors:
            module.to("cpu")


def load_models(root: Path, checkpoint: SrCheckpoint, dtype: torch.dtype) -> SrModels:
    """One SR checkpoint from a folder in the official layout (``tencent/HunyuanVideo-1.5``:
    ``transformer/<version>/`` and ``upsampler/<version>/``), on the CPU."""
    from framecast.engines.hunyuan15.official import load_official_transformer
    from framecast.engines.hunyuan15.upsampler import load_upsampler

    transformer = load_official_transformer(root / "transformer" / checkpoint.version, dtype)
    upsampler = load_upsampler(root / "upsampler" / checkpoint.version)
    return SrModels(checkpoint, transformer, upsampler)
