"""The errors that reach clients, each with a stable code and a message a user can act on."""

from __future__ import annotations

from typing import Any

from framecast.contract.errors import ErrorCode


class FramecastError(Exception):
    """An error with a stable machine-readable ``code`` (one of :class:`ErrorCode`, the codes
    clients may branch on) and an HTTP status.

    The API turns every one of these into ``{"error": {"code", "message", ...details}}``.
    """

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    status: int = 500
    headers: dict[str, str] | None = None
    """HTTP headers the answer carries, e.g. a 429's Retry-After."""

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        status: int | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class InputError(FramecastError):
    """The request's input is unusable (HTTP 422)."""

    code = ErrorCode.INVALID_INPUT
    status = 422
