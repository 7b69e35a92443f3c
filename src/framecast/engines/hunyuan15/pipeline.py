"""diffusers' HunyuanVideo 1.5 image-to-video pipeline, with the hooks an engine needs.

We subclass ``HunyuanVideo15ImageToVideoPipeline`` and leave its ``__call__`` alone: the
denoising loop, the guider, the scheduler and the VAE are diffusers' own. The subclass adds,
for the length of one call (:meth:`FramecastHunyuan15Pipeline.hooked`):

- a step hook: the pipeline has no ``callback_on_step_end``, so the scheduler's ``step`` is
  wrapped; it runs once per step however many transformer passes the guider makes (one with
  guidance 1 or a distilled checkpoint, two with CFG). An exception the hook raises (a
  cancel) stops the loop at that step boundary.
- a pinned size: the pipeline derives the video's size from the image with diffusers' bucket
  rule, which is one-sided where the official one takes the nearest bucket, and so neither
  the official rule nor idempotent (:data:`framecast.models.hunyuan15_i2v.BUCKETS`): a 480x848
  crop would become a 480x832 video, and 9:16 at 720p is 720x1264 there, 720x1280 officially.
  The engine has already chosen the official size and cropped the image to it; the pipeline is
  told to keep it.

And, for every call:

- :meth:`~FramecastHunyuan15Pipeline.starting_noise`: the stock latents drawn from a CPU
  generator, so a seed gives the same video on every GPU and on the CPU (as the official code
  does, ``noise_init_device = cpu``);
- the official VAE tiles (:func:`enable_official_vae_tiling`): diffusers' default tiles overlap
  by 0.25, the official ones by 0.125; and, as officially, they are for the decode only: the
  conditioning image is encoded whole
  (:meth:`~FramecastHunyuan15Pipeline.prepare_cond_latents_and_mask`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import torch

# Imported from their modules: the top-level names are placeholders to a type checker.
from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import (
    AutoencoderKLHunyuanVideo15,
)
from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
    HunyuanVideo15ImageToVideoPipeline,
)

StepHook = Callable[[int, int], None]
"""Called after each denoising step with (steps done, steps in all)."""


class FramecastHunyuan15Pipeline(HunyuanVideo15ImageToVideoPipeline):
    """The stock pipeline; see the module docstring for what it adds."""

    @contextlib.contextmanager
    def hooked(self, *, width: int, height: int, on_step: StepHook) -> Iterator[None]:
        """Within this, a call makes a ``width`` x ``height`` video and reports every step.

        The image passed to the call should already be that size (the pipeline's own crop
        then leaves it as it is).
        """
        scheduler = self.scheduler
        stock_step = scheduler.step
        done = 0

        def step(*args: Any, **kwargs: Any) -> Any:
            nonlocal done
            result = stock_step(*args, **kwargs)
            done += 1
            on_step(done, len(scheduler.timesteps))
            return result

        def pinned(*_args: object, **_kwargs: object) -> tuple[int, int]:
            return height, width  # as the stock method: (height, width)

        with (
            _shadowed(scheduler, "step", step),
            _shadowed(self.video_processor, "calculate_default_height_width", pinned),
        ):
            yield

    def starting_noise(
        self, seed: int, *, width: int, height: int, num_frames: int, device: torch.device
    ) -> torch.Tensor:
        """The latents the stock call would draw from a CPU generator seeded with ``seed``."""
        noise: torch.Tensor = self.prepare_latents(
            batch_size=1,
            num_channels_latents=self.num_channels_latents,
            height=height,
            width=width,
            num_frames=num_frames,
            dtype=self.transformer.dtype,
            device=device,
            generator=torch.Generator(device="cpu").manual_seed(seed),
        )
        return noise

    def prepare_cond_latents_and_mask(self, *args: Any, **kwargs: Any) -> Any:
        """The stock method, with the conditioning image encoded whole.

        Officially the VAE tiles only its decode (``hyvideo/models/autoencoders/
        hunyuanvideo_15_vae.py`` ``memory_efficient_context`` switches tiling on around the
        ``vae.decode`` call alone; ``get_image_condition_latents`` encodes with it off).
        diffusers' ``use_tiling`` covers ``encode`` too, and a 480p frame is wider than one
        256-pixel tile, so its latent would be blended at the seams.
        """
        vae = self.vae
        tiled = vae.use_tiling
        vae.use_tiling = False
        try:
            return super().prepare_cond_latents_and_mask(*args, **kwargs)
        finally:
            vae.use_tiling = tiled


class VaeTiling(TypedDict):
    """Arguments of ``AutoencoderKLHunyuanVideo15.enable_tiling``."""

    tile_sample_min_height: int
    tile_sample_min_width: int
    tile_latent_min_height: int
    tile_latent_min_width: int
    tile_overlap_factor: float


OFFICIAL_VAE_TILING: Final[VaeTiling] = {
    "tile_sample_min_height": 256,
    "tile_sample_min_width": 256,
    "tile_latent_min_height": 256 // 16,
    "tile_latent_min_width": 256 // 16,
    "tile_overlap_factor": 0.125,
}
"""The official 1.5 VAE's decode tiles, in diffusers' terms, which then compute the same
tiles: 256-pixel (16-latent) squares every 14 latents, each blended into the one before over
32 pixels, 224 pixels of each kept; no tiles in time.

Official source (Tencent-Hunyuan/HunyuanVideo-1.5): ``hyvideo/pipelines/
hunyuan_video_pipeline.py`` ``get_vae_inference_config`` gives ``sample_size`` 256 and
``tile_overlap_factor`` 0.125 on a GPU of more than 21 GiB (128 and 0.25 on a smaller one),
which ``create_pipeline`` hands to ``vae.set_tile_sample_min_size`` (latent tile = 256 // the
VAE's 16x spatial compression); ``hyvideo/models/autoencoders/hunyuanvideo_15_vae.py``
``spatial_tiled_decode``, ``blend_v`` and ``blend_h`` are the tiling and the linear blend that
diffusers' ``tiled_decode`` repeats; its temporal tiling raises ("not supported for this VAE").

framecast uses the large-GPU values on every device: the video a seed gives should not depend
on the card that made it (as :meth:`FramecastHunyuan15Pipeline.starting_noise` does for the
noise), and the official small-GPU values are a memory fallback, not another model (on a card
of 21 GiB or less, where the 8.3B transformer alone is about 16.6 GB in bf16, the decode's
peak with these tiles has not been measured)."""


def enable_official_vae_tiling(vae: AutoencoderKLHunyuanVideo15) -> None:
    """Tile the VAE's decode as the official code does (:data:`OFFICIAL_VAE_TILING`); without
    tiles a 720p decode needs far more memory, and diffusers' default overlap of 0.25 gives a
    different video. The pipeline encodes the conditioning image untiled regardless."""
    vae.enable_tiling(**OFFICIAL_VAE_TILING)


@contextlib.contextmanager
def _shadowed(obj: object, name: str, value: object) -> Iterator[None]:
    """Give one object (not its class) its own ``name`` for a while."""
    own = vars(obj)
    had, previous = name in own, own.get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, previous)
        else:
            delattr(obj, name)


@dataclass
class Conditions:
    """The prompt (and, with CFG, the negative prompt) encoded by both text encoders."""

    prompt_embeds: torch.Tensor
    prompt_embeds_mask: torch.Tensor
    prompt_embeds_2: torch.Tensor
    prompt_embeds_mask_2: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None = None
    negative_prompt_embeds_mask: torch.Tensor | None = None
    negative_prompt_embeds_2: torch.Tensor | None = None
    negative_prompt_embeds_mask_2: torch.Tensor | None = None

    def as_call_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def encode_conditions(
    pipe: HunyuanVideo15ImageToVideoPipeline,
    prompt: str,
    negative_prompt: str | None,
    device: torch.device,
) -> Conditions:
    """What the stock call encodes from ``prompt`` and ``negative_prompt``, encoded beforehand so
    the engine can report it as its own phase (and move the 7B text encoder in and out).

    ``negative_prompt`` None: no CFG, nothing to encode for it (as the stock call, which encodes
    the negative prompt only when its guider runs an unconditional pass).
    """
    dtype = pipe.transformer.dtype  # the stock call casts the embeddings to it

    def encode(text: str) -> tuple[torch.Tensor, ...]:
        return tuple(pipe.encode_prompt(prompt=text, device=device, dtype=dtype))

    conditions = Conditions(*encode(prompt))
    if negative_prompt is not None:
        (
            conditions.negative_prompt_embeds,
            conditions.negative_prompt_embeds_mask,
            conditions.negative_prompt_embeds_2,
            conditions.negative_prompt_embeds_mask_2,
        ) = encode(negative_prompt)
    return conditions
