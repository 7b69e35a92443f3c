"""How long the event loop is kept from running, for tests of work that must not stall it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


@asynccontextmanager
async def loop_waits() -> AsyncIterator[list[float]]:
    """While the block runs, a task asks to run every 2 ms; the list gets how long each of its
    sleeps really took (a stalled loop shows as one long wait)."""
    waits: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await anyio.sleep(0.002)
            now = time.perf_counter()
            waits.append(now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.01)
        try:
            yield waits
        finally:
            done.set()
