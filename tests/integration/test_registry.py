from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, update

from framecast.db import utcnow, workers
from framecast.queue.registry import WorkerRegistry, WorkerState


def _age(db: Engine, worker_id: str, seconds: float) -> None:
    with db.begin() as conn:
        conn.execute(
            update(workers)
            .where(workers.c.id == worker_id)
            .values(heartbeat_at=utcnow() - dt.timedelta(seconds=seconds))
        )


def test_live_lists_fresh_running_workers_only(db: Engine) -> None:
    reg = WorkerRegistry(db)
    for wid in ("fresh", "stale", "stopped"):
        reg.register(wid, "host", 1)
    reg.beat("fresh", state=WorkerState.IDLE, engine="preview", model="m")
    reg.beat("stopped", state=WorkerState.STOPPED)
    _age(db, "stale", 60)
    live = reg.live(dt.timedelta(seconds=15))
    assert [(w.id, w.state, w.engine) for w in live] == [("fresh", "idle", "preview")]


def test_new_worker_reports_loading_until_it_says_otherwise(db: Engine) -> None:
    reg = WorkerRegistry(db)
    reg.register("w", "host", 1)
    assert reg.live(dt.timedelta(seconds=15))[0].state == "loading"
    reg.beat("w", state=WorkerState.BUSY, current_request="r1")
    [w] = reg.live(dt.timedelta(seconds=15))
    assert (w.state, w.current_request) == ("busy", "r1")
    reg.beat("w", state=WorkerState.IDLE, current_request=None)
    assert reg.live(dt.timedelta(seconds=15))[0].current_request is None


def test_forget_drops_only_long_silent_workers(db: Engine) -> None:
    reg = WorkerRegistry(db)
    reg.register("old", "host", 1)
    reg.register("new", "host", 2)
    _age(db, "old", 8 * 86400)
    assert reg.forget_older_than(dt.timedelta(days=7)) == 1
    assert [w.id for w in reg.live(dt.timedelta(days=30))] == ["new"]


def test_only_workers_serving_a_model_count_for_it(db: Engine) -> None:
    reg = WorkerRegistry(db)
    reg.register("w-other", "host", 1, serves=["someone/else"])
    reg.register("w-i2v", "host", 2, serves=["tencent/hunyuan/image-to-video"])
    window = dt.timedelta(seconds=15)
    assert [w.id for w in reg.serving("tencent/hunyuan/image-to-video", window)] == ["w-i2v"]
    assert [w.id for w in reg.serving("someone/else", window)] == ["w-other"]
    assert reg.serving("nobody/serves-this", window) == []
