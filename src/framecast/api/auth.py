"""API keys: who is asking. Every /v1 route but the signed file links takes ``Owner``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from framecast.api.errors import error_responses
from framecast.api.services import AppServices
from framecast.errors import FramecastError

# Declares the bearer scheme in the OpenAPI document (the docs' Authorize button); the header is
# still read below, so a missing or malformed one gets framecast's own 401.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key: from FRAMECAST_API_KEYS or `framecast keys create`.",
)


def authenticate(
    request: Request,
    services: AppServices,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The owner id of the presented key; every request and file lookup is scoped to it.

    A plain ``def``: FastAPI runs it in its thread pool, off the event loop, as it may read the
    database."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise FramecastError(
            "missing API key: send it as 'Authorization: Bearer <key>'",
            code="unauthorized",
            status=401,
        )
    owner = services.keys.owner_for(key.strip())
    if owner is None:
        raise FramecastError("invalid or revoked API key", code="unauthorized", status=401)
    return owner


Owner = Annotated[str, Depends(authenticate)]

KEYED = error_responses(
    {
        401: "No API key, or one that is invalid or revoked (`unauthorized`).",
        500: "An unexpected server error (`internal_error`); it is logged.",
    }
)
"""What a keyed route answers besides its own statuses, for the OpenAPI document."""
