"""``tencent/hunyuan/image-to-video``: Tencent's HunyuanVideo-I2V, as RunComfy serves it.

Its input schema is RunComfy's (``image_url``, ``aspect_ratio``, ``resolution``, ...), widened
where the official code accepts more, then the official HunyuanVideo-I2V options with their
official defaults, then framecast's own (step cache, LoRAs).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from framecast.engines.hunyuan.loras import MAX_LORAS, SCALE_LIMIT, LoraChoice
from framecast.models.base import (
    MAX_PROMPT_CHARS,
    ModelInput,
    ModelSpec,
    RealEngine,
    refuse_many_unknown_fields,
)
from framecast.settings import DEFAULT_HUNYUAN_MODEL
from framecast.sizes import BUCKET_BASE, video_size

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
FIRST_BLOCK_CACHE_THRESHOLD = 0.06
"""ParaAttention's First Block Cache threshold for HunyuanVideo (its fastest_hunyuan_video.md)."""

ASPECT_RATIOS = ("16:9", "9:16")
RESOLUTIONS = tuple(BUCKET_BASE)
SIZES: dict[tuple[str, str], tuple[int, int]] = {
    (aspect, res): video_size(res, aspect) for aspect in ASPECT_RATIOS for res in RESOLUTIONS
}
"""(aspect_ratio, resolution) -> (width, height)."""


def _size_description() -> str:
    landscape = ", ".join(
        f"{res} is {'x'.join(map(str, SIZES[('16:9', res)]))}" for res in RESOLUTIONS
    )
    return f"{landscape} at 16:9 (9:16 swaps them): the official HunyuanVideo-I2V size buckets."


class LoraInput(BaseModel):
    """One LoRA of a request, in RunComfy's shape (``{"path", "scale"}``)."""

    model_config = ConfigDict(extra="forbid", strict=True, title="LoRA")

    path: str = Field(
        title="LoRA",
        min_length=1,
        max_length=255,
        description="The name of a LoRA in the server's LoRA folder: its file name without "
        ".safetensors. GET /v1/models lists them.",
    )
    scale: float = Field(
        1.0,
        title="Scale",
        ge=-SCALE_LIMIT,
        le=SCALE_LIMIT,
        allow_inf_nan=False,
        description="How strongly the LoRA applies: 1 as trained, 0 not at all, negative "
        "against it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_fields(cls, data: object) -> object:
        return refuse_many_unknown_fields(cls, data)


class ImageToVideoInput(ModelInput):
    """Input of ``tencent/hunyuan/image-to-video``, as RunComfy publishes it."""

    image_field: ClassVar[str] = "image_url"

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
        description=_size_description(),
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

    # Beyond the official options: an opt-in speed-up that changes the video.
    step_cache: Literal["first_block"] | None = Field(
        None,
        title="Step Cache",
        description="first_block: First Block Cache. A transformer pass whose first block "
        "barely changed since the last pass skips the other blocks and reuses their last "
        'residual. Faster, but the video deviates from the model\'s; the result says "path": '
        '"fast" and how many passes were skipped. Off by default.',
    )
    step_cache_threshold: float | None = Field(
        None,
        title="Step Cache Threshold",
        gt=0,
        le=1.0,
        description="Only with step_cache: the relative change of the first block's residual "
        f"below which a pass is skipped; default {FIRST_BLOCK_CACHE_THRESHOLD:g}. Higher skips "
        "more (faster, further from the model).",
    )

    # RunComfy's LoRA input (its Trainer LoRAs run through the same Model API endpoints).
    loras: list[LoraInput] = Field(
        default_factory=list,
        title="LoRAs",
        max_length=MAX_LORAS,
        description=f"Up to {MAX_LORAS} LoRAs from the server's LoRA folder, each with a scale, "
        'e.g. [{"path": "my-style", "scale": 0.8}]. A name the server does not have is '
        "refused at submit, with the names it has.",
    )

    @field_validator("loras")
    @classmethod
    def _distinct_loras(cls, value: list[LoraInput]) -> list[LoraInput]:
        names = [lora.path for lora in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"names the same LoRA twice ({', '.join(twice)}); give one scale")
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

    @model_validator(mode="after")
    def _threshold_needs_cache(self) -> ImageToVideoInput:
        # As with negative_prompt: a threshold alone would change nothing, silently.
        if self.step_cache_threshold is not None and self.step_cache is None:
            raise ValueError(
                "step_cache_threshold only has an effect with a step cache; set "
                'step_cache (e.g. "first_block") or drop step_cache_threshold'
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
            "step_cache": self.step_cache,
            "step_cache_threshold": (
                (self.step_cache_threshold or FIRST_BLOCK_CACHE_THRESHOLD)
                if self.step_cache is not None
                else None
            ),
            "loras": self.lora_choices,
        }

    @property
    def lora_choices(self) -> tuple[LoraChoice, ...]:
        return tuple(LoraChoice(lora.path, lora.scale) for lora in self.loras)

    @property
    def size(self) -> tuple[int, int]:
        return SIZES[(self.aspect_ratio, self.resolution)]

    @property
    def fps(self) -> int:
        return FPS


def _real_engine() -> RealEngine:
    from framecast.engines.hunyuan import loader, weights

    return RealEngine(
        availability=loader.availability,
        load=loader.load,
        setting="FRAMECAST_HUNYUAN_MODEL",
        checkpoints={"i2v": DEFAULT_HUNYUAN_MODEL},
        download=weights.download,
    )


SPEC = ModelSpec(
    id=MODEL_ID,
    description="Image to video with Tencent's HunyuanVideo-I2V.",
    input=ImageToVideoInput,
    sizes=SIZES,
    real_engine=_real_engine(),
)
