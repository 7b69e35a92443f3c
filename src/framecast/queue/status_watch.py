"""One watcher per API process follows every request that a status stream or a ``Prefer: wait``
is waiting on, and hands each waiter the request as it changes.

A waiter costs nothing while it waits: it awaits an asyncio event on its own loop, and holds no
thread, thread-pool slot or database connection. The watcher's one thread does the reading for
all of them: each sweep reads the followed requests' changing columns and queue positions in one
statement (whatever the number of waiters: 500 streams on one request are one id in it), then
reads in full only the requests that changed, and wakes their waiters with that row. Waiting
used to be a thread-pool trip per waiter per interval, and 500 streams left every plain route
(``/healthz`` included) queueing for the pool (docs/performance.md).

With PostgreSQL, a trigger on ``requests`` (migration 0006) NOTIFYs :data:`STATUS_CHANNEL` with
the request's id on every status or progress change; the process's one LISTEN connection
(:func:`framecast.db.backend.listener_for`, shared with the webhook dispatcher's wake-ups) hands
the id over, and the watcher reads a notified request at once. The full sweep then runs every :data:`LISTEN_FALLBACK_S` only:
a queued request's position changes without a notification, and notifications are missed while
that connection reconnects. With SQLite, which has no notifications, the sweep runs every
``FRAMECAST_POLL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.engine import Connection

from framecast.db import requests
from framecast.db.backend import Subscription, listener_for
from framecast.queue.jobs import Job
from framecast.queue.registry import WorkerRegistry
from framecast.states import Status

log = logging.getLogger("framecast.queue.status_watch")

STATUS_CHANNEL = "framecast_status"
"""The NOTIFY channel of migration 0006's trigger; the payload is the request id."""

LISTEN_FALLBACK_S = 2.0
"""With notifications, how often the watcher sweeps every followed request anyway."""

READ_CHUNK = 500
"""Ids per statement: well under SQLite's parameter limit, and a bounded statement."""

_STOP_CHECK_S = 1.0


@dataclass(frozen=True)
class Snapshot:
    """A request as the watcher read it: what the status route's body is made of."""

    job: Job
    queue_position: int | None
    """How many queued requests run before it; None unless it is queued."""
    workers_serving: int | None
    """For a queued request: the live workers serving its model; None otherwise."""


# The columns whose change changes the status body (with the queue position and whether any
# worker serves the model). Not updated_at: lease renewals bump it and change nothing shown.
_SHOWN = (
    requests.c.status,
    requests.c.phase,
    requests.c.step,
    requests.c.total_steps,
    requests.c.progress,
    requests.c.attempts,
    requests.c.cancel_requested_at,
    requests.c.started_at,
    requests.c.finished_at,
)

Version = tuple[Any, ...]


class StatusWatch:
    def __init__(self, engine: Engine, poll_seconds: float, heartbeat_window: dt.timedelta) -> None:
        self.engine = engine
        self._listener = listener_for(engine.url)
        self._subscription: Subscription | None = None
        self.poll_seconds = poll_seconds
        self.heartbeat_window = heartbeat_window
        self._registry = WorkerRegistry(engine)
        self._lock = threading.Lock()
        self._followers: dict[str, set[Following]] = {}
        self._known: dict[str, tuple[Version, Snapshot]] = {}
        self._urgent: set[str] = set()  # followed ids to read before the next sweep
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sweeps = 0
        """Sweeps of every followed request so far (for tests and the curious)."""

    @property
    def postgres(self) -> bool:
        """Whether changes are notified (PostgreSQL): the watcher then listens as well."""
        return self._listener is not None

    @property
    def interval(self) -> float:
        """How long a change can go unnoticed at most (a NOTIFY makes it milliseconds)."""
        return LISTEN_FALLBACK_S if self._listening.is_set() else self.poll_seconds

    @property
    def followed(self) -> int:
        """Waiters following a request now, all requests together."""
        with self._lock:
            return sum(len(f) for f in self._followers.values())

    def latest(self, request_id: str) -> Snapshot | None:
        """What the watcher last read of ``request_id``; None while nobody follows it."""
        with self._lock:
            known = self._known.get(request_id)
        return known[1] if known is not None else None

    @contextlib.contextmanager
    def follow(self, request_id: str) -> Iterator[Following]:
        """Follow ``request_id`` from a coroutine: ``await following.next(timeout)`` gives the
        request as the watcher last read it, at once the first time (or as soon as the watcher
        has read it), then after each change. Call it on the event loop that awaits."""
        following = Following(request_id)
        with self._lock:
            self._followers.setdefault(request_id, set()).add(following)
            known = self._known.get(request_id)
            if known is None:
                self._urgent.add(request_id)
        if known is not None:
            following.offer(known[1])
        else:
            self._start()
            self._kick.set()
        try:
            yield following
        finally:
            with self._lock:
                waiting = self._followers.get(request_id)
                if waiting is not None:
                    waiting.discard(following)
                    if not waiting:
                        del self._followers[request_id]
                        self._known.pop(request_id, None)
                        self._urgent.discard(request_id)

    def close(self) -> None:
        with self._lock:
            self._stop.set()
            subscription, self._subscription = self._subscription, None
        self._kick.set()
        if subscription is not None:
            # Not holding the lock: the listener's thread may be waiting on it in _notified.
            subscription.close()
        self._listening.clear()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=_STOP_CHECK_S * 3)

    # -- the watcher's threads ------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._threads or self._stop.is_set():
                return
            thread = threading.Thread(
                target=self._watch, name="framecast-status-watch", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            if self._listener is not None:
                self._subscription = self._listener.subscribe(
                    STATUS_CHANNEL, self._notified, self._listening_changed
                )

    def _watch(self) -> None:
        next_sweep = 0.0
        failing = False
        while not self._stop.is_set():
            with self._lock:
                followed = list(self._followers)
                urgent, self._urgent = self._urgent, set()
            now = time.monotonic()
            if not followed:
                ids: Sequence[str] = ()
            elif now >= next_sweep:
                ids, next_sweep = followed, now + self.interval
                self.sweeps += 1
            else:
                ids = list(urgent)
            if not ids:
                wait = next_sweep - now if followed else _STOP_CHECK_S
                self._kick.wait(min(max(wait, 0.0), _STOP_CHECK_S))
                self._kick.clear()  # what it announced is in _urgent, read at the loop's top
                continue
            try:
                self._read(ids)
            except Exception:
                # Once per outage, not once per interval: the waits simply go on waiting.
                if not failing:
                    log.warning("reading the followed requests failed; retrying", exc_info=True)
                failing = True
                with self._lock:
                    self._urgent.update(urgent)
                self._stop.wait(min(self.interval, _STOP_CHECK_S))
            else:
                if failing:
                    log.info("reading the followed requests works again")
                failing = False

    def _read(self, ids: Sequence[str]) -> None:
        """Read ``ids``' shown columns; read in full and hand out those that changed."""
        with self.engine.connect() as conn:
            versions: dict[str, tuple[str, Version]] = {}
            for start in range(0, len(ids), READ_CHUNK):
                versions.update(_versions(conn, ids[start : start + READ_CHUNK]))
            if not versions:
                return
            queued_models = {model for model, v in versions.values() if v[0] == Status.IN_QUEUE}
            serving = self._serving(queued_models)
            # + whether nobody serves a queued request's model: that shows as its note.
            seen = {
                rid: (*version, serving[model] == 0 if model in serving else None)
                for rid, (model, version) in versions.items()
            }
            with self._lock:
                changed = {
                    rid: version
                    for rid, version in seen.items()
                    if (known := self._known.get(rid)) is None or known[0] != version
                }
            if not changed:
                return
            jobs: dict[str, Job] = {}
            changed_ids = list(changed)
            for start in range(0, len(changed_ids), READ_CHUNK):
                chunk = changed_ids[start : start + READ_CHUNK]
                rows = conn.execute(select(requests).where(requests.c.id.in_(chunk))).mappings()
                jobs.update((row["id"], Job.from_row(row)) for row in rows)
        deliveries: dict[asyncio.AbstractEventLoop, list[tuple[Following, Snapshot]]] = {}
        with self._lock:
            for rid, version in changed.items():
                job = jobs.get(rid)
                if job is None or rid not in self._followers:
                    continue
                queued = job.status is Status.IN_QUEUE
                snapshot = Snapshot(
                    job,
                    queue_position=version[-2] if queued else None,
                    workers_serving=serving.get(job.model) if queued else None,
                )
                # From the full row, which may be newer than the version read before it: the
                # next read then sees no change from what was handed out.
                self._known[rid] = ((*_version_of(job), version[-2], version[-1]), snapshot)
                for following in self._followers[rid]:
                    deliveries.setdefault(following.loop, []).append((following, snapshot))
        for loop, batch in deliveries.items():
            # One call per loop, not per waiter: each call wakes the loop's selector.
            with contextlib.suppress(RuntimeError):  # that loop has closed, its waits with it
                loop.call_soon_threadsafe(_deliver, batch)

    def _serving(self, models: set[str]) -> dict[str, int]:
        """Live workers serving each of ``models``: one query whatever their number."""
        if not models:
            return {}
        live = self._registry.live(self.heartbeat_window)
        return {m: sum(1 for w in live if w.serves is None or m in w.serves) for m in models}

    def _listening_changed(self, listening: bool) -> None:
        """From the listener: LISTEN is in effect (sweep rarely), or lost (sweep as polling)."""
        if listening and not self._stop.is_set():
            self._listening.set()
        else:
            self._listening.clear()

    def _notified(self, request_id: str) -> None:
        with self._lock:
            if request_id not in self._followers:
                return  # nobody here waits on it
            self._urgent.add(request_id)
        self._kick.set()


def _version_of(job: Job) -> Version:
    """The shown columns of ``job``, as :func:`_versions` reads them."""
    return tuple(getattr(job, column.name) for column in _SHOWN)


def _versions(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[str, Version]]:
    """id -> (model, shown columns + queue position) of each of ``ids``, in one statement; a
    queued request's position is counted by the database, not one query each."""
    ahead = requests.alias("ahead")
    position = (
        select(func.count())
        .select_from(ahead)
        .where(
            ahead.c.status == Status.IN_QUEUE,
            ahead.c.model == requests.c.model,
            ahead.c.seq < requests.c.seq,
        )
        .correlate(requests)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(
            requests.c.id,
            requests.c.model,
            *_SHOWN,
            case((requests.c.status == Status.IN_QUEUE, position), else_=None),
        ).where(requests.c.id.in_(ids))
    )
    out: dict[str, tuple[str, Version]] = {}
    for row in rows:
        shown = list(row[2:])
        shown[0] = Status(shown[0])
        out[row[0]] = (row[1], tuple(shown))
    return out


def _deliver(batch: list[tuple[Following, Snapshot]]) -> None:
    for following, snapshot in batch:
        following.offer(snapshot)


class Following:
    """One request followed by one waiter (see :meth:`StatusWatch.follow`)."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.loop = asyncio.get_running_loop()
        self.latest: Snapshot | None = None
        self._event = asyncio.Event()

    def offer(self, snapshot: Snapshot) -> None:
        """On the follower's loop: a newer read of the request."""
        self.latest = snapshot
        self._event.set()

    async def next(self, within: float) -> Snapshot | None:
        """The request once it has changed since the last call (the first call: as soon as the
        watcher has read it); None when ``within`` seconds pass first."""
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, within)):
                    await self._event.wait()
            if not self._event.is_set():
                return None
        self._event.clear()
        return self.latest
