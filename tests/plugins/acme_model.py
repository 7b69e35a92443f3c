"""A model declared outside framecast, as a plug-in would be (FRAMECAST_MODEL_PLUGINS=acme_model).

It has no real engine, so the preview engine serves it, at its own size.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from framecast.models import ModelInput, ModelSpec

SIZES = {("1:1", "256p"): (256, 256), ("2:1", "256p"): (512, 256)}


class AcmeInput(ModelInput):
    image_field: ClassVar[str] = "picture"

    prompt: str = Field(min_length=1)
    picture: str = Field(min_length=1)
    seed: int = Field(1, ge=0)
    aspect_ratio: Literal["1:1", "2:1"] = "1:1"
    num_frames: int = Field(9, ge=5, le=17)

    @property
    def size(self) -> tuple[int, int]:
        return SIZES[(self.aspect_ratio, "256p")]

    @property
    def fps(self) -> int:
        return 12

    def model_options(self) -> dict[str, Any]:
        return {}


SPEC = ModelSpec(
    id="acme/pan/image-to-video",
    description="A test-only model declared in one module.",
    input=AcmeInput,
    sizes=SIZES,
)
