"""What ``framecast submit`` shows while a request runs: a live bar on a terminal, plain lines
(one per change) when stderr is a file or a pipe, so logs stay readable."""

from __future__ import annotations

from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from framecast.client import RequestStatus


def describe(status: RequestStatus) -> str:
    """One state in words: ``queued (position 2)``, ``rendering 12/129``, ``completed``."""
    if status.status == "in_queue":
        where = f" (position {status.queue_position})" if status.queue_position is not None else ""
        return f"queued{where}"
    if status.status == "in_progress":
        phase = status.phase or "running"
        if status.step is not None and status.total_steps:
            phase += f" {status.step}/{status.total_steps}"
        if status.cancel_requested:
            phase += " (cancelling)"
        return phase
    if status.error is not None:
        return f"{status.status}: {status.error.message}"
    return status.status


class ProgressView:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = ""

    def __enter__(self) -> ProgressView:
        if self._live:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=Console(file=self._stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("submitted", total=1.0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, status: RequestStatus) -> None:
        text = describe(status)
        if self._bar is not None and self._task is not None:
            done = 1.0 if status.succeeded else status.progress
            self._bar.update(self._task, description=text, completed=done or 0.0)
            return
        if text != self._last_line:
            self._last_line = text
            print(text, file=self._stream, flush=True)
