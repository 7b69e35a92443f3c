"""``tencent/hunyuan-video-v1.5/image-to-video``: Tencent's HunyuanVideo 1.5, image to video.

RunComfy's input fields for it (the image is ``image``, not ``image_url``; its page shows
``prompt`` and ``image``), the size and length fields fal and the official code offer, then the
official HunyuanVideo 1.5 options a self-hoster needs. Sizes, frame rule and checkpoint defaults
are the engine's own constants (``engines/hunyuan15/sizes.py``, ``weights.py``; no torch).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from framecast.engines.hunyuan15.sizes import (
    ASPECT_RATIOS,
    BUCKET_BASE,
    DEFAULT_FRAMES,
    FPS,
    MAX_FRAMES,
    MIN_FRAMES,
    video_size,
)
from framecast.engines.hunyuan15.weights import CHECKPOINTS
from framecast.models.base import MAX_PROMPT_CHARS, ModelInput, ModelSpec, RealEngine

MODEL_ID = "tencent/hunyuan-video-v1.5/image-to-video"
DEFAULT_PROMPT = (
    "A young woman in a red dress is walking down the street. She is looking at the camera "
    "and smiling."
)
DEFAULT_IMAGE = (
    "https://playgrounds-storage-public.runcomfy.net/tools/7221/media-files/input-1-1.png"
)
DEFAULT_SEED = 42
MAX_STEPS = 100
RESOLUTIONS = tuple(BUCKET_BASE)

SIZES: dict[tuple[str, str], tuple[int, int]] = {
    (a, r): video_size(r, a) for a in ASPECT_RATIOS for r in RESOLUTIONS
}
"""(aspect_ratio, resolution) -> (width, height): the official 1.5 buckets."""


def _checkpoint_defaults() -> str:
    return "; ".join(
        f"{c.name}: {c.num_inference_steps} steps, guidance {c.guidance_scale:g}, "
        f"shift {c.flow_shift:g}"
        for c in CHECKPOINTS
    )


class ImageToVideo15Input(ModelInput):
    """Input of ``tencent/hunyuan-video-v1.5/image-to-video``."""

    image_field: ClassVar[str] = "image"

    prompt: str = Field(
        title="Prompt",
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        json_schema_extra={"default": DEFAULT_PROMPT},
    )
    image: str = Field(
        title="Image",
        min_length=1,
        description="http(s) URL of the input image, or a data: URI (JPEG, PNG, WebP, GIF, BMP; "
        "at most 50 MB).",
        json_schema_extra={"default": DEFAULT_IMAGE},
    )
    seed: int = Field(DEFAULT_SEED, title="Seed", ge=0, le=2**63 - 1)
    resolution: Literal["480p", "720p"] = Field(
        "480p",
        title="Resolution",
        description="The official bucket nearest aspect_ratio (16:9: "
        + ", ".join(f"{r} is {'x'.join(map(str, SIZES[('16:9', r)]))}" for r in RESOLUTIONS)
        + "). Each checkpoint runs its own resolution: the default one 480p; a server with "
        "the 720p checkpoint (FRAMECAST_HUNYUAN15_MODEL) takes 720p.",
    )
    aspect_ratio: Literal["16:9", "9:16", "1:1", "4:3", "3:4"] = Field(
        "16:9", title="Aspect Ratio (W:H)"
    )
    num_frames: int = Field(
        DEFAULT_FRAMES,
        title="Number of Frames",
        ge=MIN_FRAMES,
        le=MAX_FRAMES,
        description=f"4n+1 from {MIN_FRAMES} to {MAX_FRAMES}; {FPS} fps ({DEFAULT_FRAMES}, the "
        "official default, is about 5 s).",
    )

    # The official HunyuanVideo 1.5 options. Left out, each takes the loaded checkpoint's own
    # default: a distilled checkpoint needs other values than the base one.
    num_inference_steps: int | None = Field(
        None,
        title="Inference Steps",
        ge=1,
        le=MAX_STEPS,
        description="Default: the checkpoint's (" + _checkpoint_defaults() + ").",
    )
    guidance_scale: float | None = Field(
        None,
        title="Guidance Scale",
        ge=1.0,
        le=20.0,
        description="Classifier-free guidance; above 1 each step runs the transformer twice. "
        "Default: the checkpoint's (1 for the distilled ones).",
    )
    flow_shift: float | None = Field(
        None,
        title="Flow Shift",
        gt=0,
        le=100,
        description="Sampling schedule shift. Default: the checkpoint's.",
    )
    negative_prompt: str | None = Field(
        None,
        title="Negative Prompt",
        max_length=MAX_PROMPT_CHARS,
        description="What the unconditional pass sees (official default: empty); only with "
        "guidance_scale > 1.",
    )

    @model_validator(mode="after")
    def _negative_needs_guidance(self) -> ImageToVideo15Input:
        # A distilled checkpoint's default guidance is 1, so a negative prompt needs an explicit
        # guidance_scale to be sure it has an effect.
        if self.negative_prompt is not None and (self.guidance_scale or 0.0) <= 1.0:
            raise ValueError(
                "negative_prompt only has an effect with guidance_scale > 1; set "
                "guidance_scale or drop negative_prompt"
            )
        return self

    @property
    def size(self) -> tuple[int, int]:
        return SIZES[(self.aspect_ratio, self.resolution)]

    @property
    def fps(self) -> int:
        return FPS

    def model_options(self) -> dict[str, Any]:
        # None: the loaded checkpoint's default, resolved by the engine; the result's metadata
        # records what ran.
        return {
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "flow_shift": self.flow_shift,
            "negative_prompt": self.negative_prompt,
        }


def _real_engine() -> RealEngine:
    from framecast.engines.hunyuan15 import loader, weights

    return RealEngine(
        availability=loader.availability,
        load=loader.load,
        setting=weights.SETTING,
        checkpoints={c.name: c.repo_id for c in weights.CHECKPOINTS},
        download=weights.download,
    )


SPEC = ModelSpec(
    id=MODEL_ID,
    description="Image to video with Tencent's HunyuanVideo 1.5 (8.3B).",
    input=ImageToVideo15Input,
    sizes=SIZES,
    real_engine=_real_engine(),
)
