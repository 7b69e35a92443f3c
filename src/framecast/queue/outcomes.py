"""How one attempt at a request ended, as the worker hands it to the code that records it.

One small value per ending, matched exhaustively where the final status is written
(:meth:`framecast.worker.loop.Worker._finish`), so a new kind of ending cannot be forgotten there.
"""

from __future__ import annotations

from dataclasses import dataclass

from framecast.contract.errors import ErrorCode
from framecast.queue.results import VideoResult


@dataclass(frozen=True)
class Succeeded:
    result: VideoResult


@dataclass(frozen=True)
class Failed:
    code: ErrorCode
    message: str


@dataclass(frozen=True)
class Cancelled:
    """Stopped because the client asked: the request ends cancelled."""

    reason: str


@dataclass(frozen=True)
class Released:
    """Stopped because the worker is shutting down: the request goes back to the queue."""

    reason: str


@dataclass(frozen=True)
class LeaseLost:
    """Another worker owns the request now: this one writes nothing."""


Outcome = Succeeded | Failed | Cancelled | Released | LeaseLost
