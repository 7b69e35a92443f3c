"""Worker heartbeats: which workers are alive, what they run and what they are doing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, RowMapping, delete, insert, select, update

from framecast.db import utcnow, workers


class WorkerState(StrEnum):
    """What a worker is doing, as its heartbeat says (``workers.state``)."""

    LOADING = "loading"
    """Its engine is not ready yet."""
    IDLE = "idle"
    BUSY = "busy"
    STOPPED = "stopped"
    FAILED = "failed"
    """It gave up loading its engine (``reason`` says why)."""


LIVE_STATES = (WorkerState.LOADING, WorkerState.IDLE, WorkerState.BUSY)
"""The states of a worker that is running (given a recent heartbeat)."""
READY_STATES = frozenset({WorkerState.IDLE, WorkerState.BUSY})
"""The states of a worker that takes requests."""


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    hostname: str
    pid: int
    engine: str | None
    model: str | None
    state: WorkerState
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    current_request: str | None
    serves: list[str] | None
    reason: str | None = None
    """Why it is not ready (loading failed, or a retry is under way); None when nothing is wrong."""
    stages: dict[str, list[str]] | None = None
    """Model id -> the optional stages it runs for that model (``Engine.stages``); None until
    its engines are loaded."""


def _info(row: RowMapping) -> WorkerInfo:
    return WorkerInfo(**{**row, "state": WorkerState(row["state"])})


class WorkerRegistry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(
        self, worker_id: str, hostname: str, pid: int, serves: list[str] | None = None
    ) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                insert(workers).values(
                    id=worker_id,
                    hostname=hostname,
                    pid=pid,
                    serves=serves,
                    state=WorkerState.LOADING.value,
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    def beat(
        self,
        worker_id: str,
        *,
        state: WorkerState | None = None,
        engine: str | None = None,
        model: str | None = None,
        current_request: str | bool | None = False,
        reason: str | bool | None = False,
        serves: list[str] | bool | None = False,
        stages: dict[str, list[str]] | None = None,
    ) -> None:
        """Refresh the heartbeat; optionally change the fields given (False: leave as is)."""
        values: dict[str, object] = {"heartbeat_at": utcnow()}
        if reason is not False:
            values["reason"] = reason
        if serves is not False:
            values["serves"] = serves
        if stages is not None:
            values["stages"] = stages
        if state is not None:
            values["state"] = state.value
        if engine is not None:
            values["engine"] = engine
        if model is not None:
            values["model"] = model
        if current_request is not False:
            values["current_request"] = current_request
        with self.engine.begin() as conn:
            conn.execute(update(workers).where(workers.c.id == worker_id).values(**values))

    def live(self, max_age: dt.timedelta) -> list[WorkerInfo]:
        """Workers whose last heartbeat is younger than ``max_age`` and that have not stopped
        (or given up)."""
        cutoff = utcnow() - max_age
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(workers).where(
                        workers.c.heartbeat_at >= cutoff,
                        workers.c.state.not_in(
                            [WorkerState.STOPPED.value, WorkerState.FAILED.value]
                        ),
                    )
                )
                .mappings()
                .all()
            )
        return [_info(row) for row in rows]

    def failed(self, since: dt.datetime) -> list[WorkerInfo]:
        """Workers that gave up loading their engine at ``since`` or later, newest first."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(workers)
                    .where(
                        workers.c.state == WorkerState.FAILED.value,
                        workers.c.heartbeat_at >= since,
                    )
                    .order_by(workers.c.heartbeat_at.desc())
                )
                .mappings()
                .all()
            )
        return [_info(row) for row in rows]

    def serving(self, model: str, max_age: dt.timedelta) -> list[WorkerInfo]:
        """Live workers that claim requests for ``model`` (loading ones included)."""
        return [w for w in self.live(max_age) if w.serves is None or model in w.serves]

    def missing_stages(
        self, model: str, stages: tuple[str, ...], max_age: dt.timedelta
    ) -> str | None:
        """None where a live worker for ``model`` runs every one of ``stages`` (or one still
        loading may), else one line saying what the live workers can run."""
        workers = self.serving(model, max_age)
        if any(w.stages is None or set(stages) <= set(w.stages.get(model, ())) for w in workers):
            return None
        wanted = ", ".join(stages)
        if not workers:
            return f"no worker is running {model}, so none can run {wanted}"
        have = "; ".join(
            f"{w.hostname}: {', '.join((w.stages or {}).get(model, ())) or 'no optional stage'}"
            for w in workers
        )
        return f"no live worker for {model} can run {wanted} (they run: {have})"

    def forget_older_than(self, age: dt.timedelta) -> int:
        """Drop rows of workers silent for ``age`` so the table does not grow forever."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    delete(workers).where(workers.c.heartbeat_at < utcnow() - age)
                ).rowcount
            )
