"""Typed answers of the API, as framecast and RunComfy send them: the wire format's own models
(:mod:`framecast.contract.requests`, which the server answers with too), and the model card.

Every model keeps fields it does not know (``extra="allow"``): RunComfy and newer framecast
servers add fields, and a client must not break on them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from framecast.contract.requests import (
    SUCCEEDED,
    TERMINAL,
    CancelResult,
    JobError,
    Output,
    RequestPage,
    RequestResult,
    RequestStatus,
    Submitted,
)

__all__ = [
    "SUCCEEDED",
    "TERMINAL",
    "CancelResult",
    "JobError",
    "ModelCard",
    "Output",
    "RequestPage",
    "RequestResult",
    "RequestStatus",
    "Submitted",
]


class ModelCard(BaseModel):
    """A model as ``GET /v1/models`` lists it (framecast only)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    description: str | None = None
    image_field: str | None = None
    input_schema: dict[str, JsonValue] = Field(default_factory=dict)
