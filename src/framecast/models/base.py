"""What a model declaration is: one :class:`ModelSpec` per served model, each in its own module.

A model is declared once: its RunComfy id, its input and output schemas (pydantic, with
RunComfy's field names), its sizes and frame rule, its frame rate, its defaults (those of its
checkpoints too) and how its real engine is loaded. The API's routes, ``/v1/models``, the
OpenAPI document, ``framecast generate``, the workers' ``serves`` list, settings and the
engines all read these declarations; no other module spells a default or a size
(tests/unit/test_model_declarations.py keeps it so).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from framecast.models.request import GenerationRequest, LoraChoice

if TYPE_CHECKING:
    from framecast.settings import Settings

MAX_PROMPT_CHARS = 10_000

MAX_UNKNOWN_FIELDS = 20
"""Past this many unknown fields in one object, they are refused together, as one problem."""


def refuse_many_unknown_fields(model: type[BaseModel], data: object) -> object:
    """A before-validator for models that forbid extra fields.

    Pydantic reports each unknown field as its own error, and building 100,000 of them takes
    the API's event loop most of a second; an object with that many is refused at once instead.
    """
    if not isinstance(data, dict) or len(data) <= len(model.model_fields) + MAX_UNKNOWN_FIELDS:
        return data
    unknown = [key for key in data if key not in model.model_fields]
    if len(unknown) <= MAX_UNKNOWN_FIELDS:
        return data
    shown = ", ".join(f"'{str(key)[:40]}'" for key in unknown[:3])
    raise ValueError(
        f"{len(unknown):,} unknown fields ({shown}, ...); "
        f"allowed fields: {', '.join(model.model_fields)}"
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
"""RunComfy's output schema of its video models: what a declaration has unless it says otherwise."""


StepCache = Literal["first_block"]
"""The ``step_cache`` values: First Block Cache, the one step cache the Hunyuan engines run."""
FIRST_BLOCK_CACHE_THRESHOLD: Final = 0.06
"""ParaAttention's First Block Cache threshold for HunyuanVideo (its fastest_hunyuan_video.md),
the default of every model with a step cache (none was published for HunyuanVideo 1.5)."""


def step_cache_field() -> Any:
    """The ``step_cache`` field of a model that offers one (declared after the model's own
    options; :class:`ModelInput` checks it against ``step_cache_threshold``)."""
    return Field(
        None,
        title="Step Cache",
        description="first_block: First Block Cache. A transformer pass whose first block "
        "barely changed since the last pass skips the other blocks and reuses their last "
        'residual. Faster, but the video deviates from the model\'s; the result says "path": '
        '"fast" and how many passes were skipped. Off by default.',
    )


def step_cache_threshold_field() -> Any:
    """The ``step_cache_threshold`` field, declared right after ``step_cache``."""
    return Field(
        None,
        title="Step Cache Threshold",
        gt=0,
        le=1.0,
        description="Only with step_cache: the relative change of the first block's residual "
        f"below which a pass is skipped; default {FIRST_BLOCK_CACHE_THRESHOLD:g}. Higher skips "
        "more (faster, further from the model).",
    )


def step_cache_options(step_cache: StepCache | None, threshold: float | None) -> dict[str, Any]:
    """The step cache as an engine receives it: the threshold defaulted with a cache, None
    without one."""
    return {
        "step_cache": step_cache,
        "step_cache_threshold": (
            (threshold or FIRST_BLOCK_CACHE_THRESHOLD) if step_cache is not None else None
        ),
    }


class ModelInput(BaseModel, ABC):
    """The input of one model: its fields, validation, and the request an engine gets from it.

    Subclasses declare the fields (RunComfy's names first, then the official options) and
    :attr:`image_field`, the name of the field that holds the image's URL.
    """

    # strict: "123" is not a seed and 129.0 is not a frame count; a client that sends them
    # has a bug it should hear about rather than have guessed around.
    model_config = ConfigDict(extra="forbid", strict=True, title="Input")

    image_field: ClassVar[str]
    """``image_url`` for HunyuanVideo-I2V, ``image`` for 1.5: RunComfy names them differently."""

    frame_step: ClassVar[int] = 1
    """``num_frames`` must be ``frame_step``·n + 1 (4 for a VAE that compresses time 4x after
    the first frame); 1: any count within the field's bounds."""

    if TYPE_CHECKING:
        # Every model declares these itself (pydantic keeps a subclass's own field order, which
        # is RunComfy's); the type checker needs to know they exist.
        prompt: str
        seed: int
        num_frames: int

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_fields(cls, data: object) -> object:
        return refuse_many_unknown_fields(cls, data)

    @field_validator("prompt", check_fields=False)
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value

    @field_validator("num_frames", "seed", "num_inference_steps", mode="before", check_fields=False)
    @classmethod
    def _whole_number(cls, value: object) -> object:
        # A JSON float is the wrong type for a count, even when it is whole (129.0).
        if isinstance(value, float | bool):
            raise ValueError("must be an integer")
        return value

    @field_validator("num_frames", check_fields=False)
    @classmethod
    def _frame_rule(cls, value: int) -> int:
        step = cls.frame_step
        if (value - 1) % step:
            metadata = cls.model_fields["num_frames"].metadata
            low = next((int(m.ge) for m in metadata if hasattr(m, "ge")), 1)
            high = next((str(m.le) for m in metadata if hasattr(m, "le")), "...")
            lower = value - (value - 1) % step
            raise ValueError(
                f"must be {step}n+1 ({low}, {low + step}, ..., {high}); "
                f"nearest are {lower} and {lower + step}"
            )
        return value

    # A field validator, not a model validator, so that the 422 names the field (the later one
    # of the pair: step_cache is validated by then, and absent from info.data if invalid).
    @field_validator("step_cache_threshold", check_fields=False)
    @classmethod
    def _threshold_needs_cache(cls, value: float | None, info: ValidationInfo) -> float | None:
        # As with a negative prompt without guidance: a threshold alone would change nothing,
        # silently.
        if value is not None and "step_cache" in info.data and info.data["step_cache"] is None:
            raise ValueError(
                'only has an effect with a step cache; set step_cache (e.g. "first_block") or '
                "drop step_cache_threshold"
            )
        return value

    @property
    def lora_choices(self) -> tuple[LoraChoice, ...]:
        """The LoRAs this request names (none for a model without LoRAs)."""
        return ()

    @property
    def required_stages(self) -> tuple[str, ...]:
        """The optional engine stages this request needs (``Engine.stages``); the API refuses
        it at submit where no live worker runs them."""
        return ()

    @property
    def image_source(self) -> str:
        """The image's URL or data: URI, whatever this model calls the field."""
        value: str = getattr(self, self.image_field)
        return value

    @property
    @abstractmethod
    def size(self) -> tuple[int, int]:
        """(width, height) of the video."""

    @property
    @abstractmethod
    def fps(self) -> int: ...

    @abstractmethod
    def model_options(self) -> dict[str, Any]:
        """The model-specific inputs, defaults resolved, as engines receive them."""

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
            fps=self.fps,
            options=self.model_options(),
        )

    def stored(self) -> dict[str, Any]:
        """The input as the request row keeps it: a data: URI can be 50 MB, and the image
        itself is stored once, beside it, not in every row read."""
        data = self.model_dump()
        source = self.image_source
        if source.startswith("data:"):
            data[self.image_field] = source[: source.find(",") + 1] + "..."
        return data


def deferred(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` as a function that imports its module when first called.

    A declaration names its engine's functions this way: the engine imports the declaration's
    constants, and importing a declaration must not import the engine (nor torch).
    """
    module, _, name = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    call.__qualname__ = target
    return call


@dataclass(frozen=True)
class NotRunnable:
    """Why a model's real engine cannot run here (``RealEngine.availability``)."""

    reason: str
    install: str | None = None
    """How to install what is missing, where that is the reason: no retry can help then."""


@dataclass(frozen=True)
class RealEngine:
    """How the real model behind a declaration is found and loaded (``FRAMECAST_ENGINE=hunyuan``).

    Its callables import the engine (and torch) only when called (:func:`deferred`), so
    declarations cost nothing to import.
    """

    availability: Callable[[Settings], NotRunnable | None]
    """None if the real engine can run here, else why not (packages, GPU, weights)."""
    load: Callable[[Settings], Any]
    """Returns a :class:`framecast.engines.base.Engine` (declarations sit below the engines and
    do not import them: the engine is named by a string, see :func:`deferred`)."""
    setting: str
    """The environment variable that names this model's weights, e.g. FRAMECAST_HUNYUAN_MODEL."""
    checkpoints: Mapping[str, str]
    """Short name -> hub id of each checkpoint ``framecast weights download`` offers; the
    first is the default."""
    download: Callable[[str, Path | None], Path]
    """Fetch a hub id into the Hugging Face cache (or a folder) and check it is complete."""


@dataclass(frozen=True)
class ModelSpec:
    id: str
    """RunComfy's model id, which is also the route: ``POST /v1/models/{id}``."""
    description: str
    input: type[ModelInput]
    sizes: Mapping[tuple[str, str], tuple[int, int]]
    """(aspect_ratio, resolution) -> (width, height), whatever the engine."""
    output_schema: Mapping[str, Any] = field(default_factory=lambda: OUTPUT_SCHEMA)
    """What ``GET /v1/models`` says a result holds; RunComfy's video output by default."""
    real_engine: RealEngine | None = None
    """None: only the preview engine can serve it."""

    @property
    def fields(self) -> list[str]:
        return list(self.input.model_fields)

    def card(self) -> dict[str, Any]:
        """This model as ``GET /v1/models`` lists it."""
        return {
            "id": self.id,
            "description": self.description,
            "input_schema": self.input.model_json_schema(),
            # Which input takes the image (RunComfy names it per model): for forms like the
            # playground's, which build themselves from this card.
            "image_field": self.input.image_field,
            "output_schema": self.output_schema,
            "sizes": [
                {"aspect_ratio": aspect, "resolution": res, "width": w, "height": h}
                for (aspect, res), (w, h) in self.sizes.items()
            ],
        }
