"""What an engine is asked to run: one request's values, checked and filled in from the model's
declaration. Engines import these; the declarations build them (no torch here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

MAX_LORAS = 3
"""LoRAs one request may combine: RunComfy's LoRA models take up to three."""
SCALE_LIMIT = 4.0
"""|scale| allowed. PEFT takes any float and multiplies the LoRA's delta by it; past about 2 a
LoRA trained at 1 usually wrecks the video, so 4 leaves room to experiment (negative scales
subtract a concept) while a typo such as 80 for 0.8 is refused rather than run for minutes."""


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA a request asks for."""

    name: str
    scale: float = 1.0


@dataclass(frozen=True)
class GenerationRequest:
    image: Image.Image
    """RGB, EXIF orientation already applied, any size: the engine fits it to width x height."""
    prompt: str
    seed: int
    width: int
    height: int
    num_frames: int
    fps: int
    """The model's (each model declares its own)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Engine-specific inputs beyond the common ones (e.g. ``num_inference_steps``)."""
