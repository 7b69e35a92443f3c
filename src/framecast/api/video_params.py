"""OpenAI's ``size`` and ``seconds`` in a model's own terms, and back.

OpenAI's videos API asks for a size ("1280x720", any "WxH") and a duration ("4", in seconds).
A HunyuanVideo model makes neither exactly: it runs at its official size buckets (its
``aspect_ratio`` and ``resolution``) and 4n+1 frames at its frame rate. So a size is mapped to
the model's nearest bucket (aspect ratio first, then resolution) and seconds to the nearest
allowed frame count; the Video object then reports the size and seconds actually produced.
Everything here reads the model's declaration (:class:`~framecast.models.ModelSpec`): a model
added later maps the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from framecast.models import ModelSpec

_SIZE = re.compile(r"^\s*([1-9][0-9]{0,4})\s*[xX]\s*([1-9][0-9]{0,4})\s*$")
MAX_SECONDS = 600.0
"""Ten minutes: far beyond any model's maximum, which caps the frames anyway."""


class BadParameter(ValueError):
    """A value the videos API cannot map; ``param`` names the field (OpenAI's ``param``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class FrameRule:
    """A model's frame counts: ``step``·n + 1 from ``low`` to ``high``, at ``fps``."""

    step: int
    low: int
    high: int
    default: int
    fps: int

    def frames_for(self, seconds: float) -> int:
        """The allowed frame count nearest ``seconds``, capped at the model's bounds."""
        n = math.floor((seconds * self.fps - 1) / self.step + 0.5)  # halves round up
        return min(self.high, max(self.low, self.step * n + 1))


def frame_rule(spec: ModelSpec) -> FrameRule:
    field = spec.input.model_fields["num_frames"]
    low = next((int(m.ge) for m in field.metadata if hasattr(m, "ge")), 1)
    high = next((int(m.le) for m in field.metadata if hasattr(m, "le")), low)
    # fps is declared as an instance property (a model could vary it by input); both models'
    # is a constant, read off an unvalidated instance.
    fps = int(spec.input.model_construct().fps)  # type: ignore[call-arg]
    return FrameRule(spec.input.frame_step, low, high, int(field.default), fps)


def parse_size(text: str) -> tuple[int, int]:
    match = _SIZE.match(text)
    if match is None:
        raise BadParameter("size", f"size must be WIDTHxHEIGHT, e.g. 1280x720; got {text[:40]!r}")
    return int(match.group(1)), int(match.group(2))


def parse_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_SECONDS:
        raise BadParameter(
            "seconds", f"seconds must be a duration in seconds, e.g. 4; got {text[:40]!r}"
        )
    return seconds


def nearest_bucket(spec: ModelSpec, width: int, height: int) -> tuple[str, str]:
    """(aspect_ratio, resolution) of the model's bucket nearest ``width`` x ``height``: the
    nearest aspect ratio (by log ratio: 2:1 and 1:2 are equally far from 1:1), then, among
    that aspect's resolutions, the nearest pixel count (by log ratio too)."""
    wanted = math.log(width / height)

    def aspect_distance(key: tuple[str, str]) -> float:
        w, h = spec.sizes[key]
        return abs(math.log(w / h) - wanted)

    best = min(aspect_distance(key) for key in spec.sizes)
    # The buckets of one aspect ratio differ slightly in shape from one resolution to the
    # next (grid rounding): every key of the nearest aspect_ratio, by its name.
    aspect = next(a for (a, r) in spec.sizes if aspect_distance((a, r)) == best)
    same = [key for key in spec.sizes if key[0] == aspect]
    pixels = width * height
    return min(
        same, key=lambda key: abs(math.log(spec.sizes[key][0] * spec.sizes[key][1] / pixels))
    )


def format_seconds(frames: int, fps: int) -> str:
    """The duration of ``frames`` at ``fps``, as OpenAI's string: "5.38", "4.04", "4"."""
    return f"{frames / fps:.2f}".rstrip("0").rstrip(".")


def model_fields(
    spec: ModelSpec, size: str | None, seconds: str | None, given: Mapping[str, Any]
) -> dict[str, Any]:
    """The model's own fields for an OpenAI ``size`` and ``seconds``: ``aspect_ratio``,
    ``resolution``, ``num_frames``. Left out, each is the model's default; given beside its
    model field (``size`` with ``resolution``, ``seconds`` with ``num_frames``), it is refused
    rather than one silently winning."""
    fields: dict[str, Any] = {}
    if size is not None:
        clash = [name for name in ("aspect_ratio", "resolution") if name in given]
        if clash:
            raise BadParameter(
                clash[0], f"give size or {' and '.join(clash)}, not both (size picks them)"
            )
        fields["aspect_ratio"], fields["resolution"] = nearest_bucket(spec, *parse_size(size))
    if seconds is not None:
        if "num_frames" in given:
            raise BadParameter("num_frames", "give seconds or num_frames, not both")
        fields["num_frames"] = frame_rule(spec).frames_for(parse_seconds(seconds))
    return fields


@dataclass(frozen=True)
class Produced:
    """What a request makes, as the Video object reports it."""

    width: int
    height: int
    frames: int
    fps: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def seconds(self) -> str:
        return format_seconds(self.frames, self.fps)


def produced(
    spec: ModelSpec | None, stored_input: Mapping[str, Any], made: Mapping[str, Any] | None
) -> Produced | None:
    """The size and length of a request: what its video has (``made``: its result's metadata,
    probed from the file), else what its input asks for; None if neither says."""
    if made is not None:
        values = [made.get(key) for key in ("width", "height", "num_frames", "fps")]
        if all(isinstance(v, int) and v > 0 for v in values):
            return Produced(*values)  # type: ignore[arg-type]
    if spec is None:
        return None
    rule = frame_rule(spec)
    defaults = {name: f.default for name, f in spec.input.model_fields.items()}
    key = (
        str(stored_input.get("aspect_ratio", defaults.get("aspect_ratio"))),
        str(stored_input.get("resolution", defaults.get("resolution"))),
    )
    if key not in spec.sizes:
        return None
    frames = stored_input.get("num_frames", rule.default)
    width, height = spec.sizes[key]
    return Produced(width, height, int(frames), rule.fps)
