"""Signed, expiring links to inputs and outputs: the link itself is the credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from framecast.api.errors import error_responses
from framecast.api.services import AppServices

router = APIRouter(tags=["files"])


@router.get(
    "/v1/files/{key:path}",
    response_model=None,
    responses={
        200: {"content": {"video/mp4": {}, "image/jpeg": {}}},
        206: {"description": "The requested byte range (HTTP Range requests)."},
        400: {"description": "A malformed Range header (plain text, from the file server)."},
        416: {"description": "A Range beyond the end of the file (plain text)."},
        **error_responses(
            {
                403: "Expired (`link_expired`) or tampered (`invalid_signature`) link.",
                404: "The file no longer exists (`file_not_found`).",
                422: "`expires` or `signature` missing or not valid (`invalid_input`).",
                500: "An unexpected server error (`internal_error`); it is logged.",
            }
        ),
    },
)
def files(
    key: str,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query()],
    services: AppServices,
) -> Response:
    """Signed, expiring links to outputs; no header needed; Range requests supported."""
    # The store answers its own links; its LinkError reaches the client in the error shape.
    return services.storage.serve(key, expires, signature)
