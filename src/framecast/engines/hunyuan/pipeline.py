"""diffusers' HunyuanVideo-I2V pipeline, corrected where it departs from the official code.

We wrap ``HunyuanVideoImageToVideoPipeline`` rather than fork it: the denoising loop, the
scheduler step and the VAE are diffusers' own. Where diffusers differs from the official
implementation (``Tencent-Hunyuan/HunyuanVideo-I2V``, ``hyvideo/``) in a way that changes the
video, the official behaviour wins, and each place says why:

- starting latent: diffusers always starts from ``0.999 * noise + 0.001 * image latent``; the
  official code does that only with ``--i2v-stability`` and starts from pure noise without it
  (:class:`FramecastHunyuanPipeline`);
- flow shift: diffusers takes it from the scheduler config; officially it is a per-run choice,
  7 with stability and 17 without (:func:`scheduler_with_shift`);
- negative prompt (true CFG): diffusers encodes it keeping every 2nd image token while the
  token_replace model was trained with every 4th, as the official code does
  (:func:`encode_conditions`);
- CLIP prompt: diffusers hands CLIP ``prompt`` even when ``prompt_2`` is set. We have one
  prompt, stripped of surrounding whitespace as the official code does, and give it to both
  encoders explicitly.
- VAE tiling: diffusers' default tiles are 16 frames with a 12-frame stride; the official VAE
  decodes 64-frame tiles with a 48-frame stride (:func:`enable_official_vae_tiling`), and
  encodes the conditioning image whole, with tiling off
  (:meth:`FramecastHunyuanPipeline.prepare_latents`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import PIL.Image
import torch

# Imported from their modules: the top-level names are placeholders to a type checker.
from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import AutoencoderKLHunyuanVideo
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import (
    DEFAULT_PROMPT_TEMPLATE,
    HunyuanVideoImageToVideoPipeline,
)
from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
)

IMAGE_EMBED_INTERLEAVE = 4
"""Every 4th of the 576 LLaVA image tokens goes to the token_replace transformer."""


class FramecastHunyuanPipeline(HunyuanVideoImageToVideoPipeline):
    """The stock pipeline with the official starting latent.

    Set :attr:`i2v_stability` before a call, and pass the noise as ``latents``: with
    stability on the call is exactly the stock one; with it off the noise is used as it is.
    """

    # A class attribute, not an __init__ argument: diffusers reads the pipeline's components
    # from __init__'s signature, which must stay the stock one.
    i2v_stability: bool = True

    def prepare_latents(  # type: ignore[override]
        self,
        image: torch.Tensor,
        batch_size: int,
        num_channels_latents: int = 32,
        height: int = 720,
        width: int = 1280,
        num_frames: int = 129,
        dtype: torch.dtype | None = None,
        device: torch.device | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        image_condition_type: str = "latent_concat",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Official: tiling is switched on for the decode only; the conditioning image is
        # encoded whole (spatial tiles would blend its latent at the seams).
        tiled = self.vae.use_tiling
        self.vae.disable_tiling()
        try:
            mixed, image_latents = super().prepare_latents(
                image,
                batch_size,
                num_channels_latents,
                height,
                width,
                num_frames,
                dtype,
                device,
                generator,
                latents,
                image_condition_type,
            )
        finally:
            if tiled:
                self.vae.enable_tiling()
        if self.i2v_stability:
            return mixed, image_latents
        # Official `prepare_latents` without --i2v-stability: pure Gaussian noise, nothing of
        # the image mixed in (the first frame is replaced by the image latent every step anyway).
        if latents is None:
            raise ValueError("i2v_stability=False needs the starting noise passed as `latents`")
        return latents.to(device=mixed.device, dtype=mixed.dtype), image_latents


OFFICIAL_VAE_TILING: dict[str, int] = {
    "tile_sample_min_height": 256,
    "tile_sample_min_width": 256,
    "tile_sample_stride_height": 192,
    "tile_sample_stride_width": 192,
    "tile_sample_min_num_frames": 64,
    "tile_sample_stride_num_frames": 48,
}
"""The official VAE's tiles in pixels and frames (``hyvideo/vae``: ``sample_size`` 256,
``sample_tsize`` 64, overlap 0.25), in diffusers' terms, which then compute the same tiles."""


def enable_official_vae_tiling(vae: AutoencoderKLHunyuanVideo) -> None:
    """Tile the VAE's decode as the official code does; without tiles a 720p decode needs
    far more memory. (diffusers' 16-frame tiles give a different video.)"""
    vae.enable_tiling(**OFFICIAL_VAE_TILING)


def scheduler_with_shift(
    scheduler: FlowMatchEulerDiscreteScheduler, shift: float
) -> FlowMatchEulerDiscreteScheduler:
    """A copy of ``scheduler`` with the official per-run flow shift."""
    shifted: FlowMatchEulerDiscreteScheduler = FlowMatchEulerDiscreteScheduler.from_config(
        scheduler.config, shift=shift
    )
    return shifted


@dataclass
class Conditions:
    """What the transformer is conditioned on, from the two text encoders."""

    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    prompt_attention_mask: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None
    negative_prompt_attention_mask: torch.Tensor | None = None

    def as_call_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "prompt_embeds": self.prompt_embeds,
            "pooled_prompt_embeds": self.pooled_prompt_embeds,
            "prompt_attention_mask": self.prompt_attention_mask,
        }
        if self.negative_prompt_embeds is not None:
            kwargs.update(
                negative_prompt_embeds=self.negative_prompt_embeds,
                negative_pooled_prompt_embeds=self.negative_pooled_prompt_embeds,
                negative_prompt_attention_mask=self.negative_prompt_attention_mask,
            )
        return kwargs


def encode_conditions(
    pipe: HunyuanVideoImageToVideoPipeline,
    image: PIL.Image.Image,
    prompt: str,
    negative_prompt: str | None,
    device: torch.device,
    prompt_template: dict[str, Any] | None = None,
) -> Conditions:
    """Encode the prompt (and, for true CFG, the negative prompt) the official way."""
    template = prompt_template or DEFAULT_PROMPT_TEMPLATE

    def encode(picture: PIL.Image.Image, text: str) -> tuple[torch.Tensor, ...]:
        # diffusers annotates `image` as a tensor but hands it to the CLIP image processor,
        # which takes (and in the stock __call__ is given) a PIL image.
        return tuple(
            pipe.encode_prompt(
                image=picture,  # type: ignore[arg-type]
                prompt=text.strip(),
                prompt_template=template,
                device=device,
                image_embed_interleave=IMAGE_EMBED_INTERLEAVE,
            )
        )

    conditions = Conditions(*encode(image, prompt))
    if negative_prompt is not None:
        # Official: the unconditional branch sees a black image of the input's size, and the
        # same image-token interleave as the conditional one (diffusers uses 2 here).
        black = PIL.Image.new("RGB", image.size, 0)
        (
            conditions.negative_prompt_embeds,
            conditions.negative_pooled_prompt_embeds,
            conditions.negative_prompt_attention_mask,
        ) = encode(black, negative_prompt)
    return conditions
