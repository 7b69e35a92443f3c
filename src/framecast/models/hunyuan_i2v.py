"""``tencent/hunyuan/image-to-video``: Tencent's HunyuanVideo-I2V, as RunComfy serves it.

Its input schema is RunComfy's (``image_url``, ``aspect_ratio``, ``resolution``, ...), widened
where the official code accepts more, then the official HunyuanVideo-I2V options with their
official defaults, then framecast's own (step cache, LoRAs). Every default, size, frame rule and
the default checkpoint of this model is here; the engine (``engines/hunyuan/``) and the settings
read them from this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, get_args

from pydantic import Field, ValidationInfo, field_validator

from framecast.models.base import (
    MAX_PROMPT_CHARS,
    OUTPUT_SCHEMA,
    ModelInput,
    ModelSpec,
    RealEngine,
    StepCache,
    deferred,
    step_cache_field,
    step_cache_options,
    step_cache_threshold_field,
)
from framecast.models.loras import (
    LoraInput,
    distinct_loras_validator,
    lora_choices,
    loras_field,
)
from framecast.models.request import LoraChoice
from framecast.sizes import Buckets

if TYPE_CHECKING:
    from framecast.settings import Settings

MODEL_ID: Final = "tencent/hunyuan/image-to-video"
SETTING: Final = "FRAMECAST_HUNYUAN_MODEL"
"""The setting that names this model's weights."""
DEFAULT_CHECKPOINT: Final = "hunyuanvideo-community/HunyuanVideo-I2V"
"""The default ``FRAMECAST_HUNYUAN_MODEL``: the diffusers-format official weights (the 16-channel
token_replace checkpoint, the only one the engine runs)."""


def checkpoint(settings: Settings) -> str:
    """The weights a worker loads: FRAMECAST_HUNYUAN_MODEL, else :data:`DEFAULT_CHECKPOINT`."""
    return settings.hunyuan_model or DEFAULT_CHECKPOINT


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
FPS: Final = 24

FRAME_STEP: Final = 4
"""num_frames is 4n+1: the VAE compresses time 4x after the first frame."""
MIN_FRAMES: Final = 5
MAX_FRAMES: Final = 129
DEFAULT_FRAMES: Final = MAX_FRAMES
MAX_STEPS = 100
DEFAULT_STEPS: Final = 50
DEFAULT_CFG_SCALE: Final = 1.0
"""1: no true classifier-free guidance (one transformer pass per step), as officially."""
EMBEDDED_GUIDANCE_SCALE: Final = 6.0
FLOW_SHIFT_STABLE: Final = 7.0
FLOW_SHIFT_FREE: Final = 17.0
NEGATIVE_PROMPT_I2V: Final = (
    "deformation, a poor composition and deformed video, bad teeth, bad eyes, bad limbs"
)
"""The official I2V default negative prompt, used only with true CFG (``cfg_scale`` > 1)."""

AspectRatio = Literal["16:9", "9:16"]
Resolution = Literal["720p", "540p", "360p"]
ASPECT_RATIOS: Final[tuple[AspectRatio, ...]] = get_args(AspectRatio)
RESOLUTIONS: Final[tuple[Resolution, ...]] = get_args(Resolution)

BUCKET_BASE: Final[Mapping[str, int]] = {"720p": 960, "540p": 720, "360p": 480}
"""The official ``bucket_hw_base_size`` of each ``i2v_resolution`` (``hyvideo/inference.py``)."""
BUCKETS: Final = Buckets(BUCKET_BASE, grid=32)
"""The official I2V size rule (``hyvideo/utils/data_utils.py``, ``generate_crop_size_list(base,
32)``): 16:9 at 720p is 1248x704, a size the model was trained at, and ~5% fewer tokens than
1280x720."""
buckets = BUCKETS.buckets
closest_bucket = BUCKETS.closest_bucket
video_size = BUCKETS.video_size

SIZES: Final = BUCKETS.table(ASPECT_RATIOS)
"""(aspect_ratio, resolution) -> (width, height)."""


def _size_description() -> str:
    landscape = ", ".join(
        f"{res} is {'x'.join(map(str, SIZES[('16:9', res)]))}" for res in RESOLUTIONS
    )
    return f"{landscape} at 16:9 (9:16 swaps them): the official HunyuanVideo-I2V size buckets."


class ImageToVideoInput(ModelInput):
    """Input of ``tencent/hunyuan/image-to-video``, as RunComfy publishes it."""

    image_field: ClassVar[str] = "image_url"
    frame_step: ClassVar[int] = FRAME_STEP

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
    aspect_ratio: AspectRatio = Field("16:9", title="Aspect Ratio (W:H)")
    # Widened from RunComfy's single value: every value it accepts still means the same.
    resolution: Resolution = Field(
        "720p",
        title="Resolution",
        description=_size_description(),
    )
    num_frames: int = Field(
        DEFAULT_FRAMES,
        title="Number of Frames",
        ge=MIN_FRAMES,
        le=MAX_FRAMES,
        description=f"{FRAME_STEP}n+1 from {MIN_FRAMES} to {MAX_FRAMES} (the VAE compresses "
        f"time {FRAME_STEP}x); {FPS} fps.",
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
        DEFAULT_CFG_SCALE,
        title="CFG Scale",
        ge=1.0,
        le=20.0,
        description="True classifier-free guidance; above 1 it uses negative_prompt and costs "
        f"two transformer passes per step. The model's embedded guidance "
        f"({EMBEDDED_GUIDANCE_SCALE:.1f}) applies always.",
    )
    negative_prompt: str | None = Field(
        None,
        title="Negative Prompt",
        max_length=MAX_PROMPT_CHARS,
        description="Only with cfg_scale > 1; defaults to the official I2V negative prompt.",
    )

    # Beyond the official options: an opt-in speed-up that changes the video.
    step_cache: StepCache | None = step_cache_field()
    step_cache_threshold: float | None = step_cache_threshold_field()

    # RunComfy's LoRA input (its Trainer LoRAs run through the same Model API endpoints).
    loras: list[LoraInput] = loras_field()
    _distinct_loras = distinct_loras_validator()

    # Field validators, not model validators, so that a 422 names the field (the later field of
    # the pair: the earlier one is validated by then, and is absent from info.data if invalid).
    @field_validator("negative_prompt")
    @classmethod
    def _negative_needs_cfg(cls, value: str | None, info: ValidationInfo) -> str | None:
        # The official code drops the negative prompt when CFG is off; accepting one silently
        # would let a client believe it had an effect.
        if value is not None and info.data.get("cfg_scale", 2.0) <= 1.0:
            raise ValueError(
                "only has an effect with cfg_scale > 1 (true classifier-free guidance, twice "
                "the GPU time per step); set cfg_scale or drop negative_prompt"
            )
        return value

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
            **step_cache_options(self.step_cache, self.step_cache_threshold),
            "loras": self.lora_choices,
        }

    @property
    def lora_choices(self) -> tuple[LoraChoice, ...]:
        return lora_choices(self.loras)

    @property
    def size(self) -> tuple[int, int]:
        return SIZES[(self.aspect_ratio, self.resolution)]

    @property
    def fps(self) -> int:
        return FPS


def options_for(**given: Any) -> dict[str, Any]:
    """What :meth:`ImageToVideoInput.model_options` gives for an input that sets ``given`` (its
    field names; ``loras`` as :class:`LoraChoice` values) and leaves the rest at their defaults.

    For a request built without an input (tests, benchmarks): the engine takes its options as
    given, so this is where a partial set is completed, by the same rules as an API request's.
    """
    unknown = given.keys() - ImageToVideoInput.model_fields.keys()
    if unknown:
        raise TypeError(f"not options of {MODEL_ID}: {', '.join(sorted(unknown))}")
    loras = tuple(given.pop("loras", ()))
    # Unvalidated: the caller's values are taken as they are, the rest are the fields' defaults.
    options = ImageToVideoInput.model_construct(**given).model_options()
    return {**options, "loras": loras}


SPEC = ModelSpec(
    id=MODEL_ID,
    description="Image to video with Tencent's HunyuanVideo-I2V.",
    input=ImageToVideoInput,
    sizes=SIZES,
    output_schema=OUTPUT_SCHEMA,
    real_engine=RealEngine(
        availability=deferred("framecast.engines.hunyuan.loader:availability"),
        load=deferred("framecast.engines.hunyuan.loader:load"),
        setting=SETTING,
        checkpoints={"i2v": DEFAULT_CHECKPOINT},
        download=deferred("framecast.engines.hunyuan.weights:download"),
    ),
)
