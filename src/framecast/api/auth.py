"""API keys: who is asking. Every /v1 route but the signed file links takes ``Owner``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from framecast.admission.keys import KeyStore
from framecast.api.errors import error_responses
from framecast.api.services import AppServices
from framecast.contract.errors import ErrorCode
from framecast.errors import FramecastError

# Declares the bearer scheme in the OpenAPI document (the docs' Authorize button); the header is
# still read below, so a missing or malformed one gets framecast's own 401.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key: from FRAMECAST_API_KEYS or `framecast keys create`.",
)


AUTHENTICATED_OWNER = "framecast.owner"
"""Where the body guard (``api/limits.py``), which checks the key of every request with a body
before reading it, leaves the owner in the request's scope state: the route's own check below
then takes it from there instead of looking the key up a second time."""


def owner_for_header(keys: KeyStore, header: str) -> str:
    """The owner id of the key in an ``Authorization`` header's value; a 401 (FramecastError)
    for a missing, malformed, invalid or revoked one. May read the database."""
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise FramecastError(
            "missing API key: send it as 'Authorization: Bearer <key>'",
            code=ErrorCode.UNAUTHORIZED,
            status=401,
        )
    owner = keys.owner_for(key.strip())
    if owner is None:
        raise FramecastError("invalid or revoked API key", code=ErrorCode.UNAUTHORIZED, status=401)
    return owner


def authenticate(
    request: Request,
    services: AppServices,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The owner id of the presented key; every request and file lookup is scoped to it.

    A plain ``def``: FastAPI runs it in its thread pool, off the event loop, as it may read the
    database."""
    # Set by this server's own middleware only (the scope's state is never the client's).
    checked = request.scope.get("state", {}).get(AUTHENTICATED_OWNER)
    if isinstance(checked, str):
        return checked
    return owner_for_header(services.keys, request.headers.get("authorization", ""))


Owner = Annotated[str, Depends(authenticate)]

KEYED = error_responses(
    {
        401: "No API key, or one that is invalid or revoked (`unauthorized`).",
        500: "An unexpected server error (`internal_error`); it is logged.",
    }
)
"""What a keyed route answers besides its own statuses, for the OpenAPI document."""
