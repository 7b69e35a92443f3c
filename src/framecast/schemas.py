"""The models this server serves and their input/output schemas (RunComfy's, exactly)."""

from __future__ import annotations

from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from framecast.engines.base import GenerationRequest

MODEL_ID = "tencent/hunyuan/image-to-video"
DEFAULT_PROMPT = (
    "A lone gunslinger in a black trench coat walks slowly down an empty desert highway, his "
    "heavy boots crunching against the pavement. The wind howls softly, dust swirling in the "
    "distance. He comes to a stop, raising his pistol with steady precision. A single gunshot "
    "echoes through the barren landscape. The camera holds the moment, the smoke drifting from "
    "the barrel as the neon lights of a distant roadside bar flicker in the background. "
    "Cinematic western-noir, slow deliberate movement, tense atmosphere."
)
DEFAULT_IMAGE_URL = (
    "https://playgrounds-storage-public.runcomfy.net/tools/7011/media-files/usecase3-1-input.jpg"
)
DEFAULT_SEED = 99271155
FPS = 24
MAX_PROMPT_CHARS = 10_000

MIN_FRAMES = 5
MAX_FRAMES = 129
MAX_STEPS = 100
DEFAULT_STEPS = 50
EMBEDDED_GUIDANCE_SCALE = 6.0
FLOW_SHIFT_STABLE = 7.0
FLOW_SHIFT_FREE = 17.0
NEGATIVE_PROMPT_I2V = (
    "deformation, a poor composition and deformed video, bad teeth, bad eyes, bad limbs"
)
"""The official I2V default negative prompt, used only with true CFG (``cfg_scale`` > 1)."""

# The named resolution at 16:9, each side rounded up to a multiple of 16 (the transformer
# patchifies 8x-downsampled latents by 2), as the official `align_to` does: 540 -> 544,
# 360 -> 368. 9:16 swaps the sides.
_LANDSCAPE: dict[str, tuple[int, int]] = {
    "720p": (1280, 720),
    "540p": (960, 544),
    "360p": (640, 368),
}
SIZES: dict[tuple[str, str], tuple[int, int]] = {
    **{("16:9", res): size for res, size in _LANDSCAPE.items()},
    **{("9:16", res): (h, w) for res, (w, h) in _LANDSCAPE.items()},
}
"""(aspect_ratio, resolution) -> (width, height)."""


class ImageToVideoInput(BaseModel):
    """Input of ``tencent/hunyuan/image-to-video``, as RunComfy publishes it."""

    # strict: "123" is not a seed and 129.0 is not a frame count; a client that sends them
    # has a bug it should hear about rather than have guessed around.
    model_config = ConfigDict(extra="forbid", strict=True, title="Input")

    prompt: str = Field(
        title="Prompt",
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        json_schema_extra={"default": DEFAULT_PROMPT},
    )
    image_url: str = Field(
        title="Image",
        min_length=1,
        description="http(s) URL of the input image, or a data: URI (JPEG, PNG, WebP, GIF, BMP; at most 50 MB).",
        json_schema_extra={"default": DEFAULT_IMAGE_URL},
    )
    seed: int = Field(DEFAULT_SEED, title="Seed", ge=0, le=2**63 - 1)
    aspect_ratio: Literal["16:9", "9:16"] = Field("16:9", title="Aspect Ratio (W:H)")
    # Widened from RunComfy's single value: every value it accepts still means the same.
    resolution: Literal["720p", "540p", "360p"] = Field(
        "720p",
        title="Resolution",
        description="720p is 1280x720, 540p 960x544, 360p 640x368 (at 16:9; 9:16 swaps them).",
    )
    num_frames: int = Field(
        129,
        title="Number of Frames",
        ge=MIN_FRAMES,
        le=MAX_FRAMES,
        description="4n+1 from 5 to 129 (the VAE compresses time 4x); 24 fps.",
    )

    # Beyond RunComfy's schema: the official HunyuanVideo-I2V options, with its defaults.
    i2v_stability: bool = Field(
        True,
        title="I2V Stability",
        description="Start from 0.999*noise + 0.001*image latent (steadier, closer to the image); "
        "off starts from pure noise (more motion).",
    )
    flow_shift: float | None = Field(
        None,
        title="Flow Shift",
        gt=0,
        le=100,
        description=f"Sampling schedule shift; default {FLOW_SHIFT_STABLE:g} with i2v_stability, "
        f"{FLOW_SHIFT_FREE:g} without.",
    )
    num_inference_steps: int = Field(DEFAULT_STEPS, title="Inference Steps", ge=1, le=MAX_STEPS)
    cfg_scale: float = Field(
        1.0,
        title="CFG Scale",
        ge=1.0,
        le=20.0,
        description="True classifier-free guidance; above 1 it uses negative_prompt and costs "
        "two transformer passes per step. The model's embedded guidance (6.0) applies always.",
    )
    negative_prompt: str | None = Field(
        None,
        title="Negative Prompt",
        max_length=MAX_PROMPT_CHARS,
        description="Only with cfg_scale > 1; defaults to the official I2V negative prompt.",
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value

    @field_validator("num_frames", "seed", "num_inference_steps", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        # A JSON float is the wrong type for a count, even when it is whole (129.0).
        if isinstance(value, float | bool):
            raise ValueError("must be an integer")
        return value

    @field_validator("num_frames")
    @classmethod
    def _four_n_plus_one(cls, value: int) -> int:
        if (value - 1) % 4:
            lower = value - (value - 1) % 4
            raise ValueError(
                f"must be 4n+1 (5, 9, ..., 125, 129); nearest are {lower} and {lower + 4}"
            )
        return value

    @model_validator(mode="after")
    def _negative_needs_cfg(self) -> ImageToVideoInput:
        # The official code drops the negative prompt when CFG is off; accepting one silently
        # would let a client believe it had an effect.
        if self.negative_prompt is not None and self.cfg_scale <= 1.0:
            raise ValueError(
                "negative_prompt only has an effect with cfg_scale > 1 (true classifier-free "
                "guidance, twice the GPU time per step); set cfg_scale or drop negative_prompt"
            )
        return self

    @property
    def resolved_flow_shift(self) -> float:
        if self.flow_shift is not None:
            return self.flow_shift
        return FLOW_SHIFT_STABLE if self.i2v_stability else FLOW_SHIFT_FREE

    def model_options(self) -> dict[str, Any]:
        """The HunyuanVideo-specific inputs, defaults resolved, as engines receive them."""
        return {
            "num_inference_steps": self.num_inference_steps,
            "i2v_stability": self.i2v_stability,
            "flow_shift": self.resolved_flow_shift,
            "cfg_scale": self.cfg_scale,
            "negative_prompt": (
                (self.negative_prompt or NEGATIVE_PROMPT_I2V) if self.cfg_scale > 1.0 else None
            ),
            "embedded_guidance_scale": EMBEDDED_GUIDANCE_SCALE,
        }

    @property
    def size(self) -> tuple[int, int]:
        return SIZES[(self.aspect_ratio, self.resolution)]

    def generation_request(self, image: Image.Image) -> GenerationRequest:
        """What an engine is asked to make for this input (the worker and `generate` share it)."""
        width, height = self.size
        return GenerationRequest(
            image=image,
            prompt=self.prompt,
            seed=self.seed,
            width=width,
            height=height,
            num_frames=self.num_frames,
            fps=FPS,
            options=self.model_options(),
        )


OUTPUT_SCHEMA: dict[str, Any] = {
    "output": {
        "type": "object",
        "properties": {
            "image": {"type": "string", "format": "uri", "description": "single image URL"},
            "video": {"type": "string", "format": "uri", "description": "single video URL"},
            "images": {
                "type": "array",
                "description": "multiple image URLs",
                "items": {"type": "string", "format": "uri"},
            },
            "videos": {
                "type": "array",
                "description": "multiple video URLs",
                "items": {"type": "string", "format": "uri"},
            },
        },
    }
}


def model_card() -> dict[str, Any]:
    return {
        "id": MODEL_ID,
        "description": "Image to video with Tencent's HunyuanVideo-I2V.",
        "input_schema": ImageToVideoInput.model_json_schema(),
        "output_schema": OUTPUT_SCHEMA,
    }
