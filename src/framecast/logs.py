"""Logging set-up: readable lines, or JSON lines (``FRAMECAST_LOG_FORMAT=json``) for a log store.

The request a line is about travels in a context variable, not in each call's arguments: the
API sets it for a route on a request, the worker while it runs one, so every line logged on
the way (the engine's, the store's, a library's) carries it. A thread started inside that work
gets it by running in a copy of the context (:func:`contextvars.copy_context`).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Literal, TextIO

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "framecast_request_id", default=None
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has; any other one came from ``extra=`` and goes into the JSON.
# color_message: uvicorn's copy of its message with terminal colours, noise in a log store.
_RECORD_ATTRS = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}


@contextlib.contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Lines logged inside carry ``request_id``."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


def bind_request_id(request_id: str) -> None:
    """From here to the end of the current context (an API route's HTTP request, which
    :class:`framecast.api.request_ids.RequestIdContext` scopes), lines carry ``request_id``."""
    request_id_var.set(request_id)


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or None) on each record as ``record.request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id when
    the line is about a request, exception text when there is one, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an ``extra`` value JSON cannot hold is written as its text, never lost.
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The readable format, with ``[request <id>]`` before the message of a request's lines."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None or request_id in record.message:
            return line
        return f"{line} [request {request_id}]"


def make_handler(
    log_format: Literal["text", "json"], stream: TextIO | None = None
) -> logging.Handler:
    handler: logging.Handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def configure_logging(level: str, log_format: Literal["text", "json"]) -> None:
    """The root logger writes to stderr in ``log_format``; everything, uvicorn's records
    included, goes through it."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(log_format))
    root.setLevel(level.upper())
    # alembic names each of its plug-ins at INFO whenever it is first imported: seven lines of
    # every start that say nothing about framecast (its "Running upgrade" lines stay).
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
