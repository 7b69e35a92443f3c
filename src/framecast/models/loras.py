"""The ``loras`` input both Hunyuan models take, declared once: RunComfy's shape
(``"loras": [{"path": NAME, "scale": s}]``, at most :data:`MAX_LORAS`). No torch here.

A model declares it with ``loras: list[LoraInput] = loras_field()`` and
``_distinct = distinct_loras_validator()``, and returns :func:`lora_choices` from its
``lora_choices`` property.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from framecast.models.base import refuse_many_unknown_fields
from framecast.models.request import MAX_LORAS, SCALE_LIMIT, LoraChoice


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


def loras_field() -> Any:
    """The ``loras`` field (RunComfy's LoRA input: its Trainer LoRAs run through the same Model
    API endpoints)."""
    return Field(
        default_factory=list,
        title="LoRAs",
        max_length=MAX_LORAS,
        description=f"Up to {MAX_LORAS} LoRAs from the server's LoRA folder, each with a scale, "
        'e.g. [{"path": "my-style", "scale": 0.8}]. A name the server does not have is '
        "refused at submit, with the names it has.",
    )


def _distinct(value: list[LoraInput]) -> list[LoraInput]:
    names = [lora.path for lora in value]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"names the same LoRA twice ({', '.join(twice)}); give one scale")
    return value


def distinct_loras_validator() -> Any:
    """The validator that refuses a LoRA named twice (the 422 names ``loras``)."""
    return field_validator("loras")(classmethod(lambda _cls, value: _distinct(value)))


def lora_choices(loras: Sequence[LoraInput]) -> tuple[LoraChoice, ...]:
    return tuple(LoraChoice(lora.path, lora.scale) for lora in loras)
