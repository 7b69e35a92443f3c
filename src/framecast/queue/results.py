"""What a completed request stored: the one shape of ``requests.result``.

The worker writes it, the API and retention read it; all of them go through
:class:`VideoResult`, so the stored JSON has one definition and a row that does not match it
fails loudly where it is read instead of as a ``KeyError`` somewhere downstream.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError, field_validator
from pydantic_core import to_jsonable_python


class MalformedResult(ValueError):
    pass


class VideoResult(BaseModel):
    """The stored outcome of a completed request: where its files are and what made them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    video_key: str
    """Storage key of the MP4."""
    poster_key: str
    """Storage key of the poster JPEG (the first frame)."""
    metadata: dict[str, JsonValue]
    """Shown to the client as is: the engine's facts and settings, the seed, the size, timings.
    Engines add their own keys, so this part stays an open JSON object."""

    @field_validator("metadata", mode="before")
    @classmethod
    def _plain_json(cls, value: Any) -> Any:
        # Engines describe their settings with tuples, enums and the like: store what JSON
        # would, so a result reads back exactly as it was written.
        return to_jsonable_python(value)

    @property
    def files(self) -> tuple[str, str]:
        """The storage keys this result refers to."""
        return self.video_key, self.poster_key

    def to_json(self) -> dict[str, JsonValue]:
        """The value stored in ``requests.result``."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, value: object, *, request_id: str = "?") -> VideoResult:
        """Read ``requests.result`` back; :class:`MalformedResult` says which row is wrong."""
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise MalformedResult(
                f"request {request_id}: the stored result is not a video result "
                f"(edited by hand, or written by an incompatible version?): {exc}"
            ) from exc
