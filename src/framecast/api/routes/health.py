"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: the database
answers and a worker is ready for at least one model), for load balancers and orchestrators.

Both need no key. ``/readyz`` gives the workers' ids (host names) and reasons (an engine load's
error names the weights' folder) only to callers on this machine or with a valid API key; anyone
else gets the same status and error code, the workers' states and the models they serve."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from framecast.api.errors import error_response, error_responses
from framecast.api.services import AppServices, Services
from framecast.contract.errors import ErrorCode
from framecast.db import utcnow
from framecast.queue.registry import READY_STATES, WorkerInfo

router = APIRouter(tags=["health"])

_NO_WORKER = "no worker has sent a heartbeat recently; start one with `framecast worker`"


FAILURES_SHOWN_FOR = dt.timedelta(days=1)
"""How long /readyz names a worker that gave up loading its engine, while none runs: such a
worker is not restarted by `framecast serve`, so its reason stays the answer until fixed."""


_DETAIL_HIDDEN = "ask with an API key, or from the server's machine, for the reason"


def _may_see_details(request: Request, services: Services) -> bool:
    """A caller on this machine (loopback), or one presenting a valid API key.

    Behind a proxy on this machine, uvicorn's proxy headers make the client the proxy's
    X-Forwarded-For address, so the proxy must send it (docs: Operations)."""
    host = request.client.host if request.client else ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass  # not an address (e.g. a Unix socket): not known to be local
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return False
    return services.keys.owner_for(key.strip()) is not None


def _why_no_worker(services: Services, detailed: bool) -> str:
    """The reason of the workers that gave up loading their engine, else the generic hint."""
    failed = services.registry.failed(since=utcnow() - FAILURES_SHOWN_FOR)
    if not failed:
        return _NO_WORKER
    if not detailed:
        return (
            f"no worker is running: {len(failed)} gave up loading their engine in the last "
            f"day; {_DETAIL_HIDDEN}"
        )
    newest = failed[0]
    more = f" ({len(failed) - 1} more failed the same way or another)" if len(failed) > 1 else ""
    return (
        f"no worker is running: worker {newest.id} stopped at "
        f"{newest.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC because {newest.reason}{more}"
    )


def _retrying(live: list[WorkerInfo]) -> str:
    """What went wrong for the live workers still trying to load their engine."""
    return "".join(f"; {w.id}: {w.reason}" for w in live if w.reason)


def _retrying_hidden(live: list[WorkerInfo]) -> str:
    return f"; some report an error ({_DETAIL_HIDDEN})" if any(w.reason for w in live) else ""


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=None,
    responses=error_responses(
        {
            503: "Database unreachable (`database_unreachable`) or no worker ready "
            "(`no_ready_worker`, with the live workers in `error.workers`)."
        }
    ),
)
def readyz(request: Request, services: AppServices) -> dict[str, Any] | JSONResponse:
    try:
        with services.db.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return error_response(
            503,
            ErrorCode.DATABASE_UNREACHABLE,
            f"the database is unreachable: {exc.__class__.__name__}",
        )
    live = services.registry.live(services.heartbeat_window)
    detailed = _may_see_details(request, services)
    workers: list[dict[str, Any]] = [
        {"id": w.id, "state": w.state, "engine": w.engine, "model": w.model, "serves": w.serves}
        if detailed
        # The id holds the host name, the model may be the weights' path.
        else {"state": w.state, "engine": w.engine, "serves": w.serves}
        for w in live
    ]
    retrying = _retrying(live) if detailed else _retrying_hidden(live)
    specs = services.models
    unserved = [
        spec.id for spec in specs if not any(w.serves is None or spec.id in w.serves for w in live)
    ]
    if len(unserved) == len(specs):
        why = (
            f"no live worker serves {', '.join(unserved)}; their requests stay queued "
            "until one starts"
        )
        if not live:
            why = _why_no_worker(services, detailed)
        return error_response(503, ErrorCode.NO_READY_WORKER, why + retrying, workers=workers)
    if not any(w.state in READY_STATES for w in live):
        # live is not empty here: some model is served by a live worker.
        why = "workers are still loading their engine"
        return error_response(503, ErrorCode.NO_READY_WORKER, why + retrying, workers=workers)
    # Ready while any model is served; a model no live worker serves is named, since its
    # requests wait until a worker for it starts.
    return {"status": "ready", "database": "ok", "workers": workers, "unserved": unserved}
