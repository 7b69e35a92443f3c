"""Liveness and readiness (framecast.api.routes.health), in-process, with the workers' rows
written through the real registry: ready only with the database up and a worker ready for at
least one model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from framecast.api.app import create_app
from framecast.api.services import build_services
from framecast.db import utcnow, workers
from framecast.queue.registry import WorkerState

from .inprocess import KEY, assert_error, client_for, services_of, settings_for

pytestmark = pytest.mark.anyio

I2V = "tencent/hunyuan/image-to-video"
I2V_15 = "tencent/hunyuan-video-v1.5/image-to-video"


def add_worker(app: FastAPI, worker_id: str, state: str, serves: list[str] | None) -> None:
    registry = services_of(app).registry
    registry.register(worker_id, "host", 1, serves=serves)
    if state != "loading":
        registry.beat(
            worker_id, state=WorkerState(state), engine="preview", model="framecast/preview-camera"
        )


async def test_healthz_needs_nothing(app: FastAPI) -> None:
    async with client_for(app, key=None) as c:
        r = await c.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_not_ready_without_a_worker(app: FastAPI) -> None:
    async with client_for(app, key=None) as c:
        body = assert_error(await c.get("/readyz"), 503, "no_ready_worker")
    assert body["error"]["workers"] == []
    assert "start one with `framecast worker`" in body["error"]["message"]


async def test_not_ready_while_the_workers_load_their_engine(app: FastAPI) -> None:
    add_worker(app, "w-1", "loading", serves=[I2V])
    async with client_for(app, key=None) as c:
        body = assert_error(await c.get("/readyz"), 503, "no_ready_worker")
    assert body["error"]["message"] == "workers are still loading their engine"
    assert [(w["id"], w["state"], w["serves"]) for w in body["error"]["workers"]] == [
        ("w-1", "loading", [I2V])
    ]


async def test_not_ready_when_the_live_workers_serve_none_of_the_models(app: FastAPI) -> None:
    add_worker(app, "w-1", "idle", serves=["acme/other/image-to-video"])
    async with client_for(app, key=None) as c:
        body = assert_error(await c.get("/readyz"), 503, "no_ready_worker")
    assert body["error"]["message"] == (
        f"no live worker serves {I2V}, {I2V_15}; their requests stay queued until one starts"
    )


async def test_ready_with_one_idle_worker_naming_the_models_nobody_serves(app: FastAPI) -> None:
    add_worker(app, "w-1", "idle", serves=[I2V])
    add_worker(app, "w-2", "loading", serves=[I2V])
    async with client_for(app, key=None) as c:
        r = await c.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready" and body["database"] == "ok"
    assert body["unserved"] == [I2V_15]
    assert {w["id"]: (w["state"], w["engine"]) for w in body["workers"]} == {
        "w-1": ("idle", "preview"),
        "w-2": ("loading", None),
    }


async def test_a_worker_serving_every_model_leaves_none_unserved(app: FastAPI) -> None:
    add_worker(app, "w-1", "busy", serves=None)
    async with client_for(app, key=None) as c:
        r = await c.get("/readyz")
    assert r.status_code == 200 and r.json()["unserved"] == []


async def test_a_silent_or_stopped_worker_does_not_count(app: FastAPI) -> None:
    add_worker(app, "w-stopped", "stopped", serves=None)
    add_worker(app, "w-silent", "idle", serves=None)
    async with client_for(app, key=None) as c:
        assert (await c.get("/readyz")).status_code == 200
        # Its last beat an hour ago, far past 3 heartbeats: written, not waited for, so a slow
        # first answer on a loaded machine cannot outlast the window.
        registry = services_of(app).registry
        with registry.engine.begin() as conn:
            conn.execute(
                update(workers)
                .where(workers.c.id == "w-silent")
                .values(heartbeat_at=utcnow() - dt.timedelta(hours=1))
            )
        body = assert_error(await c.get("/readyz"), 503, "no_ready_worker")
    assert body["error"]["workers"] == []


async def test_not_ready_when_the_database_is_unreachable_yet_still_alive(tmp_path: Path) -> None:
    # Nothing listens on port 9: the services are built, but every query fails.
    settings = settings_for(tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:9/x")
    app = create_app(settings, build_services(settings))
    async with client_for(app, key=None) as c:
        body = assert_error(await c.get("/readyz"), 503, "database_unreachable")
        assert body["error"]["message"] == "the database is unreachable: OperationalError"
        assert (await c.get("/healthz")).status_code == 200


# --- what /readyz tells whom ------------------------------------------------------------------

WEIGHTS = "/srv/framecast/weights/HunyuanVideo-I2V"
HOST = "gpu-node-17.internal"


def remote(app: FastAPI, key: str | None = None) -> httpx.AsyncClient:
    """A client calling from another machine (not loopback), with ``key`` if given."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50123)),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {key}"} if key else {},
    )


def add_failing_workers(app: FastAPI) -> None:
    registry = services_of(app).registry
    why = f"OSError: {WEIGHTS}/transformer: no such file or directory"
    registry.register(f"{HOST}-41-a1b2c3", HOST, 41, serves=[I2V])
    registry.beat(f"{HOST}-41-a1b2c3", state=WorkerState.FAILED, reason=why)


async def test_readyz_keeps_paths_and_host_names_from_anonymous_remote_callers(
    app: FastAPI,
) -> None:
    add_failing_workers(app)
    async with remote(app) as anonymous, remote(app, key="not-a-key") as wrong:
        for c in (anonymous, wrong):  # a wrong key is no key here, not a 401
            r = await c.get("/readyz")
            body = assert_error(r, 503, "no_ready_worker")
            assert WEIGHTS not in r.text and HOST not in r.text, r.text
            assert "1 gave up loading their engine" in body["error"]["message"]
    async with remote(app, key=KEY) as keyed, client_for(app, key=None) as local:
        for c in (keyed, local):
            body = assert_error(await c.get("/readyz"), 503, "no_ready_worker")
            assert WEIGHTS in body["error"]["message"] and HOST in body["error"]["message"]


async def test_readyz_keeps_a_retrying_worker_s_reason_and_id_for_keyed_callers(
    app: FastAPI,
) -> None:
    registry = services_of(app).registry
    worker = f"{HOST}-42-d4e5f6"
    registry.register(worker, HOST, 42, serves=[I2V])
    registry.beat(worker, reason=f"try 1 of 3 failed: {WEIGHTS} is not readable; retrying")
    async with remote(app) as anonymous:
        r = await anonymous.get("/readyz")
    body = assert_error(r, 503, "no_ready_worker")
    assert WEIGHTS not in r.text and HOST not in r.text, r.text
    assert body["error"]["workers"] == [{"state": "loading", "engine": None, "serves": [I2V]}]
    assert "some report an error" in body["error"]["message"]
    async with remote(app, key=KEY) as keyed:
        body = assert_error(await keyed.get("/readyz"), 503, "no_ready_worker")
    assert WEIGHTS in body["error"]["message"]
    assert [w["id"] for w in body["error"]["workers"]] == [worker]


async def test_a_ready_answer_names_workers_only_to_keyed_or_local_callers(app: FastAPI) -> None:
    registry = services_of(app).registry
    registry.register(f"{HOST}-43-abcdef", HOST, 43, serves=[I2V])
    registry.beat(f"{HOST}-43-abcdef", state=WorkerState.IDLE, engine="hunyuan", model=WEIGHTS)
    async with remote(app) as anonymous:
        r = await anonymous.get("/readyz")
    assert r.status_code == 200 and WEIGHTS not in r.text and HOST not in r.text, r.text
    assert r.json()["workers"] == [{"state": "idle", "engine": "hunyuan", "serves": [I2V]}]
    async with remote(app, key=KEY) as keyed, client_for(app, key=None) as local:
        for c in (keyed, local):
            (worker,) = (await c.get("/readyz")).json()["workers"]
            assert (worker["id"], worker["model"]) == (f"{HOST}-43-abcdef", WEIGHTS)
