"""How long a request may wait to start: fal's ``X-Fal-Request-Timeout`` header, on every
submit route (``POST /v1/models/{id}`` and ``POST /v1/videos``).

fal's convention, not Replicate's ``Cancel-After``: fal's header is a time-to-start deadline in
seconds (the clock runs from submit; once a worker starts the request it runs as long as it
needs), which is what a queue can promise without stopping work half done. Replicate's deadline
covers the whole prediction and cancels a running one too. A request still queued at its
deadline is cancelled with ``outcome: "expired"``: never claimed, nothing computed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Header

HEADER = "X-Fal-Request-Timeout"
MIN_SECONDS = 0.1
"""fal's minimum: a shorter deadline could not be met by any worker."""
MAX_SECONDS = 30 * 24 * 3600.0
"""Thirty days: longer is no deadline at all (and a far date overflows some backends)."""


def start_timeout(
    seconds: Annotated[
        float | None,
        Header(
            alias=HEADER,
            ge=MIN_SECONDS,
            le=MAX_SECONDS,
            description="Seconds this request may wait in the queue to start (fal's "
            f"time-to-start deadline, {MIN_SECONDS:g} to {MAX_SECONDS:g}). Still queued then, "
            'it is cancelled with `outcome: "expired"` and never runs; once started it runs to '
            "the end. Anything else is a 422 naming the header.",
        ),
    ] = None,
) -> dt.timedelta | None:
    return dt.timedelta(seconds=seconds) if seconds is not None else None


StartTimeout = Annotated[dt.timedelta | None, Depends(start_timeout)]
