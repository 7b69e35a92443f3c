"""diffusers' HunyuanVideo 1.5 image-to-video pipeline, with the hooks an engine needs.

We subclass ``HunyuanVideo15ImageToVideoPipeline`` and leave its ``__call__`` alone: the
denoising loop, the guider, the scheduler and the VAE are diffusers' own. The subclass adds,
for the length of one call (:meth:`FramecastHunyuan15Pipeline.hooked`):

- a step hook: the pipeline has no ``callback_on_step_end``, so the scheduler's ``step`` is
  wrapped; it runs once per step however many transformer passes the guider makes (one with
  guidance 1 or a distilled checkpoint, two with CFG). An exception the hook raises (a
  cancel) stops the loop at that step boundary.
- a pinned size: the pipeline derives the video's size from the image, and its bucket rule is
  not idempotent (:data:`framecast.models.hunyuan15_i2v.BUCKETS`): a 480x848 crop would become
  a 480x832 video. The engine has already chosen the size and cropped the image to it; the
  pipeline is told to keep it.

And :meth:`~FramecastHunyuan15Pipeline.starting_noise`: the stock latents drawn from a CPU
generator, so a seed gives the same video on every GPU and on the CPU (as the official code
does, ``noise_init_device = cpu``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

# Imported from its module: the top-level name is a placeholder to a type checker.
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
