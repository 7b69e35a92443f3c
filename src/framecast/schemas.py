"""The models this server serves and their input/output schemas (RunComfy's, exactly)."""

from __future__ import annotations

from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

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

# (aspect_ratio, resolution) -> (width, height)
SIZES: dict[tuple[str, str], tuple[int, int]] = {
    ("16:9", "720p"): (1280, 720),
    ("9:16", "720p"): (720, 1280),
}


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
    resolution: Literal["720p"] = Field("720p", title="Resolution")
    num_frames: Literal[129] = Field(129, title="Number of Frames")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value

    @field_validator("num_frames", "seed", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        # 129.0 == 129 would pass the Literal check: a JSON float is still the wrong type.
        if isinstance(value, float | bool):
            raise ValueError("must be an integer")
        return value

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
