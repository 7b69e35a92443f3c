"""Caps on the waits an API process holds open: status streams and ``Prefer: wait`` answers,
per key (FRAMECAST_MAX_STREAMS_PER_KEY) and all keys together (FRAMECAST_MAX_STREAMS).

A wait does no database work of its own (:mod:`framecast.queue.status_watch` reads for all of them),
but each holds a connection, a task and a request followed by the watcher's sweeps; without a
cap one key could open them by the thousand. Past a cap the answer is a 429 with Retry-After.
Counted in this process only: a key may hold the per-key number on each API node.
"""

from __future__ import annotations

import threading
from types import TracebackType

from framecast.admission.quotas import QuotaExceeded
from framecast.contract.errors import ErrorCode

RETRY_AFTER_S = 5
"""Retry-After of a refused wait: a slot frees when one of the waits ends, which nobody can
predict; a client should not hammer, nor wait long."""


class WaitSlots:
    """Open waits per owner and in all. Taken on the event loop; the lock only makes the
    counts safe from any thread as well."""

    def __init__(self, per_key: int, total: int) -> None:
        self.per_key = per_key
        self.total = total
        self._lock = threading.Lock()
        self._by_owner: dict[str, int] = {}
        self._open = 0

    def open(self, owner: str | None = None) -> int:
        """Waits open now: ``owner``'s, or all."""
        with self._lock:
            return self._open if owner is None else self._by_owner.get(owner, 0)

    def take(self, owner: str) -> WaitSlot:
        """A slot for one wait of ``owner``, to release when the wait ends; QuotaExceeded (429)
        when the key or this process is at its cap."""
        with self._lock:
            mine = self._by_owner.get(owner, 0)
            if mine >= self.per_key:
                raise QuotaExceeded(
                    f"this key already has {mine} status streams and Prefer: wait answers open "
                    f"on this server, its limit (FRAMECAST_MAX_STREAMS_PER_KEY); close one, or "
                    f"poll the status instead, and retry in {RETRY_AFTER_S} seconds",
                    code=ErrorCode.TOO_MANY_STREAMS,
                    retry_after=RETRY_AFTER_S,
                    limit=self.per_key,
                )
            if self._open >= self.total:
                raise QuotaExceeded(
                    f"this server has {self._open} status streams and Prefer: wait answers "
                    f"open, its limit (FRAMECAST_MAX_STREAMS); poll the status instead, or "
                    f"retry in {RETRY_AFTER_S} seconds",
                    code=ErrorCode.SERVER_STREAMS_FULL,
                    retry_after=RETRY_AFTER_S,
                    limit=self.total,
                )
            self._by_owner[owner] = mine + 1
            self._open += 1
        return WaitSlot(self, owner)

    def _release(self, owner: str) -> None:
        with self._lock:
            left = self._by_owner[owner] - 1
            if left:
                self._by_owner[owner] = left
            else:
                del self._by_owner[owner]
            self._open -= 1


class WaitSlot:
    """One taken slot; :meth:`release` (or leaving the ``with`` block) gives it back, once."""

    def __init__(self, slots: WaitSlots, owner: str) -> None:
        self._slots = slots
        self.owner = owner
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self.owner)

    def __enter__(self) -> WaitSlot:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()
