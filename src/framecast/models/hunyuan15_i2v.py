"""``tencent/hunyuan-video-v1.5/image-to-video``: Tencent's HunyuanVideo 1.5, image to video.

RunComfy's input fields for it (the image is ``image``, not ``image_url``; its page shows
``prompt`` and ``image``), the size and length fields fal and the official code offer, then the
official HunyuanVideo 1.5 options a self-hoster needs, then framecast's own (the step cache and
LoRAs, as HunyuanVideo-I2V's: :func:`framecast.models.base.step_cache_field`,
:mod:`framecast.models.loras`). Every size, frame rule,
default and checkpoint (with its official defaults) of this model is here; the engine
(``engines/hunyuan15/``) and the settings read them from this module. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, get_args

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

MODEL_ID: Final = "tencent/hunyuan-video-v1.5/image-to-video"
SETTING: Final = "FRAMECAST_HUNYUAN15_MODEL"
"""The setting that names this model's weights."""

DEFAULT_PROMPT = (
    "A young woman in a red dress is walking down the street. She is looking at the camera "
    "and smiling."
)
DEFAULT_IMAGE = (
    "https://playgrounds-storage-public.runcomfy.net/tools/7221/media-files/input-1-1.png"
)
DEFAULT_SEED = 42
MAX_STEPS = 100
NEGATIVE_PROMPT: Final = ""
"""Official ``--negative_prompt`` default."""


@dataclass(frozen=True)
class Checkpoint:
    """One of Tencent's 1.5 image-to-video transformers and how the official code runs it
    (``hyvideo/commons/__init__.py`` ``PIPELINE_CONFIGS``; README "Optimal Inference
    Configurations")."""

    version: str
    """The official ``transformer_version`` (the subfolder of ``tencent/HunyuanVideo-1.5``)."""
    repo_id: str
    """The diffusers-format copy on the Hugging Face hub (hunyuanvideo-community converts each
    into a complete pipeline, whose scheduler and guider configs carry the values below)."""
    resolution: str
    distilled: str | None
    """``"cfg"``: guidance distilled into the weights (guidance 1, still 50 steps); ``"step"``:
    also steps (8 or 12); None: the base model."""
    num_inference_steps: int
    guidance_scale: float
    flow_shift: float

    @property
    def name(self) -> str:
        """Short name, for `framecast weights download`: ``480p``, ``720p_distilled``, ..."""
        return self.version.replace("_i2v", "")


CHECKPOINTS: Final = (
    Checkpoint(
        "480p_i2v", "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v",
        "480p", None, 50, 6.0, 5.0,
    ),
    Checkpoint(
        "720p_i2v", "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_i2v",
        "720p", None, 50, 6.0, 7.0,
    ),
    Checkpoint(
        "480p_i2v_distilled",
        "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v_distilled",
        "480p", "cfg", 50, 1.0, 5.0,
    ),
    Checkpoint(
        "720p_i2v_distilled",
        "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_i2v_distilled",
        "720p", "cfg", 50, 1.0, 7.0,
    ),
    Checkpoint(
        # Official: "8 or 12 (recommended)" steps; PIPELINE_CONFIGS defaults to 12.
        "480p_i2v_step_distilled",
        "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v_step_distilled",
        "480p", "step", 12, 1.0, 7.0,
    ),
)  # fmt: skip
"""Tencent's five 1.5 image-to-video transformers; the first is the default."""

DEFAULT_CHECKPOINT: Final = CHECKPOINTS[0].repo_id
"""The default ``FRAMECAST_HUNYUAN15_MODEL``: the 480p base model, as diffusers' docs use."""

STEPS_OF_KIND: Final[Mapping[str | None, int]] = {
    c.distilled: c.num_inference_steps for c in CHECKPOINTS
}
"""Default steps by kind of checkpoint (:attr:`Checkpoint.distilled`): a converted checkpoint's
configs carry its guidance and shift but not its steps, so the engine looks them up here."""


@dataclass(frozen=True)
class SrCheckpoint:
    """One of Tencent's step-distilled super-resolution stages and how the official code runs
    it (``hyvideo/commons/__init__.py`` ``SR_PIPELINE_CONFIGS``; the noise strength is
    ``noise_scale`` in ``hyvideo/pipelines/hunyuan_video_sr_pipeline.py``)."""

    version: str
    """The official ``sr_version``: the subfolder of ``transformer/`` and ``upsampler/`` in
    :data:`SR_REPO`."""
    base_resolution: str
    """The resolution of the video it upscales (official ``base_resolution``)."""
    resolution: str
    """The resolution it makes."""
    bucket_base: int
    """Official ``SizeMap`` of :attr:`resolution`: the base of its buckets."""
    num_inference_steps: int
    flow_shift: float
    guidance_scale: float
    noise_strength: float = 0.7
    """How much noise the upsampled low-resolution latent gets: (1 - s) x latent + s x noise;
    and below ``1000 s`` on the timestep scale the transformer no longer sees it."""

    @property
    def name(self) -> str:
        """Short name, for `framecast weights download --checkpoint`: ``720p_sr``."""
        return self.version.removesuffix("_distilled")

    @property
    def repo_ref(self) -> str:
        """How ``framecast weights`` names it: the hub repo and the version in it."""
        return f"{SR_REPO}:{self.version}"


SR_REPO: Final = "tencent/HunyuanVideo-1.5"
"""Where the official SR transformers and upsamplers are (official layout, not diffusers')."""
SR_CHECKPOINTS: Final = (
    SrCheckpoint("720p_sr_distilled", "480p", "720p", 960, 6, 2.0, 1.0),
    SrCheckpoint("1080p_sr_distilled", "720p", "1080p", 1440, 8, 2.0, 1.0),
)
"""The official SR stages, one per base resolution (``TRANSFORMER_VERSION_TO_SR_VERSION``: every
480p checkpoint goes to 720p, every 720p one to 1080p)."""


@dataclass(frozen=True)
class SuperResolution:
    """A request's SR stage, as the engine receives it (``options["super_resolution"]``): the
    first pass at ``base_size``, then ``checkpoint`` up to the request's width x height."""

    checkpoint: SrCheckpoint
    base_size: tuple[int, int]


def sr_checkpoint(base_resolution: str) -> SrCheckpoint:
    """The SR stage of videos made at ``base_resolution``."""
    return next(c for c in SR_CHECKPOINTS if c.base_resolution == base_resolution)


def sr_size(width: int, height: int, sr: SrCheckpoint) -> tuple[int, int]:
    """(width, height) the official SR stage makes of a ``width`` x ``height`` video.

    The official ``BucketMap`` (``hyvideo/pipelines/hunyuan_video_sr_pipeline.py``): among the
    crop sizes of the SR resolution (16-pixel grid), the first whose first/second side is
    nearest, unrounded, the video's width/height; it reads the pair as (width, height), which
    gives the same size as the other reading, the list holding each size both ways round.
    """
    ratio = width / height
    pairs = BUCKETS.buckets(sr.bucket_base)
    best = min(range(len(pairs)), key=lambda i: (abs(pairs[i][0] / pairs[i][1] - ratio), i))
    return pairs[best]


def checkpoint(repo_id: str) -> Checkpoint | None:
    """The official checkpoint published as ``repo_id``, or None for any other."""
    return next((c for c in CHECKPOINTS if c.repo_id == repo_id), None)


AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]
Resolution = Literal["480p", "720p"]
ASPECT_RATIOS: Final[tuple[AspectRatio, ...]] = get_args(AspectRatio)
RESOLUTIONS: Final[tuple[Resolution, ...]] = get_args(Resolution)

BUCKET_BASE: Final[Mapping[str, int]] = {"480p": 640, "720p": 960}
"""The official ``bucket_hw_base_size`` of each resolution the 1.5 checkpoints are trained at."""
BUCKETS: Final = Buckets(BUCKET_BASE, grid=16, nearest=True)
"""The official 1.5 size rule (``hyvideo/utils/data_utils.py`` ``generate_crop_size_list`` and
``get_closest_ratio``, as ``hyvideo/pipelines/hunyuan_video_pipeline.py``
``get_closest_resolution_given_original_size`` calls them): buckets on a 16-pixel grid (the
official ``bucket_hw_bucket_stride``, also the VAE's spatial compression), and a video takes
the bucket whose height/width, rounded to 5 decimals, is nearest its input's, on either side,
the earlier bucket on a tie. The input is the reference image for image-to-video, and the
``aspect_ratio`` option ("W:H", read as a W x H input) for text-to-video. 16:9 is 848x480 at
480p and 1280x720 at 720p; 9:16 at 720p is 720x1280.

Two things differ from HunyuanVideo-I2V's rule: the grid is 16 pixels, not 32, and the nearest
bucket may be on either side of the input's ratio, where the I2V code takes a strictly taller
one for a landscape input and one no taller for a square or portrait input. diffusers'
``HunyuanVideo15ImageProcessor``, though it says it copies the official functions, keeps a
one-sided choice (``>= 0`` for a landscape input, ``<= 0`` otherwise), so it gives 720x1264
for 9:16 at 720p.

The official rule is idempotent: every bucket, as an input, gives itself back. diffusers' rule,
which the stock pipeline applies to the image it is handed, is not: four of the ten sizes,
cropped out of an image and fed back through it, come out one grid step off (a 480x848 crop
gives 480x832, a 720x1280 one 720x1264). So the engine pins the size it chose
(:meth:`framecast.engines.hunyuan15.pipeline.FramecastHunyuan15Pipeline.hooked`) rather than
let the pipeline recompute it from the cropped image."""
buckets = BUCKETS.buckets
closest_bucket = BUCKETS.closest_bucket
video_size = BUCKETS.video_size
image_video_size = BUCKETS.image_video_size
resolution_of = BUCKETS.resolution_of

FRAME_STEP: Final = 4
"""num_frames is 4n+1: the VAE compresses time 4x after the first frame."""
DEFAULT_FRAMES: Final = 121
"""The official default (``--video_length 121``, "the optimal value for best quality")."""
MIN_FRAMES: Final = 5
MAX_FRAMES: Final = 241
"""10 s at 24 fps, the longest video the official README speaks of ("10-second 720p video
synthesis"); the official code itself sets no limit, it only warns away from 121."""
FPS: Final = 24
"""The official code writes its videos at 24 fps (``generate.py``; diffusers' example too)."""

SIZES: Final = BUCKETS.table(ASPECT_RATIOS)
"""(aspect_ratio, resolution) -> (width, height): the official 1.5 buckets."""


def check_num_frames(num_frames: int) -> None:
    """Raise ValueError unless ``num_frames`` is 4n+1 within [MIN_FRAMES, MAX_FRAMES]."""
    if (num_frames - 1) % FRAME_STEP or not MIN_FRAMES <= num_frames <= MAX_FRAMES:
        raise ValueError(
            f"num_frames must be {FRAME_STEP}n+1 from {MIN_FRAMES} to {MAX_FRAMES}, "
            f"got {num_frames}"
        )


def _checkpoint_defaults() -> str:
    return "; ".join(
        f"{c.name}: {c.num_inference_steps} steps, guidance {c.guidance_scale:g}, "
        f"shift {c.flow_shift:g}"
        for c in CHECKPOINTS
    )


class ImageToVideo15Input(ModelInput):
    """Input of ``tencent/hunyuan-video-v1.5/image-to-video``."""

    image_field: ClassVar[str] = "image"
    frame_step: ClassVar[int] = FRAME_STEP

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
    resolution: Resolution = Field(
        "480p",
        title="Resolution",
        description="The official bucket nearest aspect_ratio (16:9: "
        + ", ".join(f"{r} is {'x'.join(map(str, SIZES[('16:9', r)]))}" for r in RESOLUTIONS)
        + f"). Each checkpoint runs its own resolution: the default one "
        f"{CHECKPOINTS[0].resolution}; a server with the 720p checkpoint ({SETTING}) takes 720p.",
    )
    aspect_ratio: AspectRatio = Field("16:9", title="Aspect Ratio (W:H)")
    num_frames: int = Field(
        DEFAULT_FRAMES,
        title="Number of Frames",
        ge=MIN_FRAMES,
        le=MAX_FRAMES,
        description=f"{FRAME_STEP}n+1 from {MIN_FRAMES} to {MAX_FRAMES}; {FPS} fps "
        f"({DEFAULT_FRAMES}, the official default, is about {DEFAULT_FRAMES // FPS} s).",
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

    super_resolution: bool = Field(
        False,
        title="Super Resolution",
        description="The official SR stage (on by default in Tencent's CLI, --sr): the video is "
        "made at `resolution`, then upscaled to the next official resolution's bucket of the "
        "same aspect ratio ("
        + "; ".join(
            f"{c.base_resolution} to {c.resolution}, 16:9 "
            + "x".join(map(str, sr_size(*SIZES[("16:9", c.base_resolution)], c)))
            + f", by {c.num_inference_steps} more steps of {c.version}"
            for c in SR_CHECKPOINTS
        )
        + "). Far cheaper than making the larger video directly; needs a worker with the SR "
        f"weights (`framecast weights download --model {MODEL_ID} --checkpoint 720p_sr`).",
    )

    # Beyond the official options: an opt-in speed-up that changes the video.
    step_cache: StepCache | None = step_cache_field()
    step_cache_threshold: float | None = step_cache_threshold_field()

    # RunComfy's LoRA input, as HunyuanVideo-I2V's (framecast.models.loras).
    loras: list[LoraInput] = loras_field()
    _distinct_loras = distinct_loras_validator()

    @field_validator("negative_prompt")
    @classmethod
    def _negative_needs_guidance(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A distilled checkpoint's default guidance is 1, so a negative prompt needs an explicit
        # guidance_scale to be sure it has an effect. A field validator (guidance_scale is
        # declared, so validated, before it) makes the 422 name negative_prompt, not the body.
        if "guidance_scale" not in info.data:
            return value  # guidance_scale itself was refused; that error says enough
        guidance = info.data["guidance_scale"]
        if value is not None and (guidance or 0.0) <= 1.0:
            raise ValueError(
                "only has an effect with guidance_scale > 1; set guidance_scale or drop "
                "negative_prompt"
            )
        return value

    @property
    def lora_choices(self) -> tuple[LoraChoice, ...]:
        return lora_choices(self.loras)

    @property
    def required_stages(self) -> tuple[str, ...]:
        return (sr_checkpoint(self.resolution).name,) if self.super_resolution else ()

    @property
    def base_size(self) -> tuple[int, int]:
        """(width, height) of the first pass: the ``resolution`` bucket."""
        return SIZES[(self.aspect_ratio, self.resolution)]

    @property
    def size(self) -> tuple[int, int]:
        if self.super_resolution:
            return sr_size(*self.base_size, sr_checkpoint(self.resolution))
        return self.base_size

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
            "super_resolution": (
                SuperResolution(sr_checkpoint(self.resolution), self.base_size)
                if self.super_resolution
                else None
            ),
            **step_cache_options(self.step_cache, self.step_cache_threshold),
            "loras": self.lora_choices,
        }


SPEC = ModelSpec(
    id=MODEL_ID,
    description="Image to video with Tencent's HunyuanVideo 1.5 (8.3B).",
    input=ImageToVideo15Input,
    sizes=SIZES,
    output_schema=OUTPUT_SCHEMA,
    real_engine=RealEngine(
        availability=deferred("framecast.engines.hunyuan15.loader:availability"),
        load=deferred("framecast.engines.hunyuan15.loader:load"),
        setting=SETTING,
        # The SR stages' too: `weights download --checkpoint 720p_sr` fetches one of them.
        checkpoints={
            **{c.name: c.repo_id for c in CHECKPOINTS},
            **{c.name: c.repo_ref for c in SR_CHECKPOINTS},
        },
        download=deferred("framecast.engines.hunyuan15.weights:download"),
    ),
)
