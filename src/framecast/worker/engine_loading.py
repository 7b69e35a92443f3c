"""A worker's engine load: a few tries with back-off, then one line saying why it gave up.

Some failures pass (a GPU still held by a process that is exiting, a network disk that is slow
to mount): those it tries ``FRAMECAST_ENGINE_LOAD_ATTEMPTS`` times, reporting each failure as
one line (the traceback only at DEBUG). Others cannot pass by waiting (a package not installed,
a setting naming no model: :class:`EngineNeedsSetup`): on those it gives up at the first try,
with what to install or change. Either way a worker must not crash-loop printing tracebacks:
it stops with :class:`EngineLoadFailed`, whose reason the worker records for ``/readyz``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from framecast.engines import Engine
from framecast.engines.base import EngineNeedsSetup
from framecast.engines.selection import EngineKind, load_engines, plan_engines
from framecast.errors import FramecastError
from framecast.settings import Settings
from framecast.startup import EXIT_ENGINE_UNAVAILABLE, StartupError

log = logging.getLogger("framecast.worker.loop")

Plan = Mapping[str, EngineKind]


class EngineLoadFailed(StartupError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_ENGINE_UNAVAILABLE)


def describe(exc: BaseException) -> str:
    """An exception as one line a person can act on."""
    message = exc.message if isinstance(exc, FramecastError) else str(exc)
    first = " ".join(message.split())
    return first if isinstance(exc, FramecastError) else f"{type(exc).__name__}: {first}"


def try_plan(settings: Settings) -> Plan | None:
    """The engine plan, or None when it cannot be made yet (:func:`load_with_retries` retries
    it and reports why)."""
    try:
        return plan_engines(settings)
    except Exception:
        return None


def what_to_do(settings: Settings, exc: BaseException) -> str:
    if isinstance(exc, EngineNeedsSetup):  # its message says what to install or change
        if settings.engine == "hunyuan":
            return (
                "then start the worker again, or set FRAMECAST_ENGINE=auto to fall back to the "
                "CPU preview engine"
            )
        return "then start the worker again"
    if settings.engine == "hunyuan":
        return (
            "fix that (a GPU, `framecast weights download`), or set FRAMECAST_ENGINE=auto to "
            "fall back to the CPU preview engine"
        )
    return "fix that and start the worker again"


def load_with_retries(
    settings: Settings,
    plan: Plan | None,
    *,
    stop: threading.Event,
    report: Callable[[str], None],
) -> tuple[Plan, dict[str, Engine]]:
    """Plan (if ``plan`` is None) and load the engines; ``report`` hears each failed try's
    reason. Returns empty ones if ``stop`` is set while waiting to retry."""
    attempts = settings.engine_load_attempts
    for attempt in range(1, attempts + 1):
        try:
            plan = plan if plan is not None else plan_engines(settings)
            return plan, load_engines(settings, plan)
        except Exception as exc:
            reason = describe(exc)
            log.debug("engine load attempt %d failed", attempt, exc_info=True)
            if attempt == attempts or isinstance(exc, EngineNeedsSetup):
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise EngineLoadFailed(
                    f"the worker could not load its engine{tries}: {reason}; "
                    f"{what_to_do(settings, exc)}"
                ) from exc
            delay = settings.engine_load_backoff_seconds * 2 ** (attempt - 1)
            report(
                f"loading the engine failed (try {attempt} of {attempts}): {reason}; "
                f"trying again in {delay:g} s"
            )
            if stop.wait(delay):
                return {}, {}
    raise AssertionError("unreachable: the last try returns or raises")
