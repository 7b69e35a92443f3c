"""The request state machine, written down once.

::

    in_queue ──claim──> in_progress ──> completed | failed | cancelled
       │                    │
       └──cancel──> cancelled   └──lease expired / worker stopping──> in_queue
       └──start deadline passed──> cancelled (error_code "expired": outcome expired)

Every change of ``requests.status`` is made by :meth:`framecast.queue.jobs.JobStore._transition`,
checked against :data:`TRANSITIONS` and written as an UPDATE guarded by the state it may come
from; the database's CHECK constraint (migration 0003) refuses any value not in :class:`Status`.
"""

from __future__ import annotations

# The values are the wire format's (clients read them): defined there, the machine here.
from framecast.contract.requests import Status

__all__ = ["TERMINAL", "TRANSITIONS", "IllegalTransition", "Status", "check"]

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.IN_QUEUE: frozenset({Status.IN_PROGRESS, Status.CANCELLED}),
    Status.IN_PROGRESS: frozenset(
        {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.IN_QUEUE}
    ),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}

TERMINAL: frozenset[Status] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


class IllegalTransition(RuntimeError):
    pass


def check(source: Status, target: Status) -> None:
    if target not in TRANSITIONS[source]:
        raise IllegalTransition(f"a request cannot go from {source} to {target}")
