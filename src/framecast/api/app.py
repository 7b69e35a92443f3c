"""The HTTP API: an app factory, nothing built at import time. It never runs the model."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine, text

from framecast import __version__
from framecast.api.errors import (
    document_error_shape,
    error_response,
    error_responses,
    install_error_handlers,
)
from framecast.api.limits import BodySizeLimit
from framecast.api.views import request_urls, result_body, status_body
from framecast.db import create_db_engine, migrate
from framecast.engines.hunyuan.loras import LoraFolder
from framecast.errors import FramecastError
from framecast.fetch import UrlFetcher
from framecast.images import check_image
from framecast.jobs import CancelOutcome, Job, JobStore
from framecast.keys import KeyStore
from framecast.models import ModelInput, ModelSpec, all_models
from framecast.playground import install_playground
from framecast.registry import WorkerRegistry
from framecast.settings import Settings
from framecast.states import Status
from framecast.storage import Storage, open_storage

log = logging.getLogger("framecast.api")


@dataclass
class Services:
    settings: Settings
    db: Engine
    jobs: JobStore
    keys: KeyStore
    registry: WorkerRegistry
    storage: Storage
    fetcher: UrlFetcher
    # The threads that decode images and data: URIs: at most FRAMECAST_DECODE_CONCURRENCY.
    decode_limiter: anyio.CapacityLimiter


def build_services(settings: Settings) -> Services:
    db = create_db_engine(settings.resolved_database_url)
    decode_limiter = anyio.CapacityLimiter(settings.decode_concurrency)
    return Services(
        settings=settings,
        db=db,
        jobs=JobStore(db, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts),
        keys=KeyStore(db, settings.api_keys),
        registry=WorkerRegistry(db),
        storage=open_storage(
            settings.storage_url, local_root=settings.media_dir, secret=settings.signing_key()
        ),
        fetcher=UrlFetcher(
            allow_private=settings.allow_private_urls,
            max_bytes=settings.max_image_bytes,
            timeout=settings.fetch_timeout_seconds,
            decode_limiter=decode_limiter,
        ),
        decode_limiter=decode_limiter,
    )


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _base_url(request: Request) -> str:
    configured = _services(request).settings.public_base_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


# Declares the bearer scheme in the OpenAPI document (the docs' Authorize button); the header is
# still read below, so a missing or malformed one gets framecast's own 401.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key: from FRAMECAST_API_KEYS or `framecast keys create`.",
)


def authenticate(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The owner id of the presented key; every request and file lookup is scoped to it."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise FramecastError(
            "missing API key: send it as 'Authorization: Bearer <key>'",
            code="unauthorized",
            status=401,
        )
    owner = _services(request).keys.owner_for(key.strip())
    if owner is None:
        raise FramecastError("invalid or revoked API key", code="unauthorized", status=401)
    return owner


Owner = Annotated[str, Depends(authenticate)]

# What routes answer besides 200, for the OpenAPI document; every error has one shape.
_KEYED = error_responses(
    {
        401: "No API key, or one that is invalid or revoked (`unauthorized`).",
        500: "An unexpected server error (`internal_error`); it is logged.",
    }
)
_NO_REQUEST = error_responses(
    {
        404: "No request with this id for this key (`request_not_found`); another key's "
        "requests look the same."
    }
)


def _find(request: Request, request_id: str, owner: str) -> Job:
    job = _services(request).jobs.get(request_id, owner)
    if job is None:
        # Another key's request looks exactly like one that does not exist.
        raise FramecastError(
            f"no request with id {request_id}", code="request_not_found", status=404
        )
    return job


Submit = Callable[[ModelSpec, ModelInput, Request, str], Awaitable[dict[str, Any]]]


def _add_submit_route(app: FastAPI, spec: ModelSpec, submit: Submit) -> None:
    """``POST /v1/models/{spec.id}``, its body validated against that model's input schema."""

    async def route(body: ModelInput, request: Request, owner: Owner) -> dict[str, Any]:
        return await submit(spec, body, request, owner)

    # FastAPI reads the body's schema off the annotation: this route's own model's input.
    route.__annotations__["body"] = spec.input
    route.__doc__ = (
        f"Queue a request for {spec.id} ({spec.description}); answers at once with its "
        "request_id and URLs."
    )
    app.post(
        f"/v1/models/{spec.id}",
        tags=["requests"],
        name=f"submit {spec.id}",
        responses={
            **_KEYED,
            **error_responses(
                {
                    413: "The body is larger than FRAMECAST_MAX_BODY_BYTES (`request_too_large`).",
                    422: "Invalid input, or an image that cannot be fetched or decoded; the "
                    "code says which (`invalid_input`, `image_fetch_failed`, "
                    "`image_too_large_to_decode`, ...).",
                }
            ),
        },
    )(route)


def create_app(settings: Settings, *, run_migrations: bool = True) -> FastAPI:
    services = build_services(settings)
    if run_migrations:
        migrate(services.db)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await services.fetcher.aclose()
            services.db.dispose()

    # Swagger UI and ReDoc from fastapi-offline's bundled files: /docs works with no internet.
    app = FastAPIOffline(
        title="framecast",
        version=__version__,
        description="RunComfy-compatible image-to-video API for HunyuanVideo-I2V.",
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
    )
    app.state.services = services
    app.add_middleware(BodySizeLimit, limit=settings.body_limit)
    lora_folder = LoraFolder(settings.lora_dir)
    specs = all_models()
    install_error_handlers(app, {f"/v1/models/{spec.id}": spec.fields for spec in specs})

    async def submit(
        spec: ModelSpec, body: ModelInput, request: Request, owner: str
    ) -> dict[str, Any]:
        if body.lora_choices:  # before fetching anything: a wrong name is the cheaper error
            unknown = await run_in_threadpool(lora_folder.unknown, body.lora_choices)
            if unknown is not None:
                raise unknown
        fetched = await services.fetcher.fetch(body.image_source)
        # Decoded in full to refuse a broken image now rather than in the worker, and dropped:
        # only its format is kept. Sized from the header first (FRAMECAST_MAX_DECODE_BYTES), in a
        # thread, at most FRAMECAST_DECODE_CONCURRENCY at once: together they bound the memory.
        checked = await anyio.to_thread.run_sync(
            partial(
                check_image,
                fetched.data,
                max_pixels=settings.max_image_pixels,
                max_decode_bytes=settings.max_decode_bytes,
            ),
            limiter=services.decode_limiter,
        )
        job_id = str(uuid.uuid4())
        image_key = f"inputs/{job_id}/image.{checked.format.lower()}"
        await run_in_threadpool(services.storage.put_bytes, image_key, fetched.data)
        job = await run_in_threadpool(
            lambda: services.jobs.submit(
                owner=owner,
                model=spec.id,
                input=body.stored(),
                image_key=image_key,
                request_id=job_id,
            )
        )
        return {"request_id": job.id, **request_urls(_base_url(request), job.id)}

    for spec in specs:
        _add_submit_route(app, spec, submit)

    @app.post("/v1/models/{model_id:path}", tags=["requests"], include_in_schema=False)
    def unknown_model(model_id: str, owner: Owner) -> JSONResponse:
        served = ", ".join(f"'{spec.id}'" for spec in specs)
        return error_response(
            404,
            "model_not_found",
            f"this server does not serve '{model_id}'; it serves {served}",
        )

    @app.get(
        "/v1/requests/{request_id}/status",
        tags=["requests"],
        responses={**_KEYED, **_NO_REQUEST},
    )
    def status(request_id: str, request: Request, owner: Owner) -> dict[str, Any]:
        job = _find(request, request_id, owner)
        serving = None
        if job.status is Status.IN_QUEUE:
            serving = len(services.registry.serving(job.model, _heartbeat_window()))
        return status_body(job, _base_url(request), services.jobs.queue_position(job), serving)

    @app.get(
        "/v1/requests/{request_id}/result",
        tags=["requests"],
        responses={**_KEYED, **_NO_REQUEST},
    )
    def result(request_id: str, request: Request, owner: Owner) -> dict[str, Any]:
        job = _find(request, request_id, owner)
        return result_body(
            job,
            _base_url(request),
            services.jobs.queue_position(job),
            services.storage,
            settings.link_ttl_seconds,
        )

    @app.post(
        "/v1/requests/{request_id}/cancel",
        tags=["requests"],
        responses={
            200: {"description": 'Queued: cancelled, it never runs (`outcome: "cancelled"`).'},
            202: {
                "description": "Running: asked to stop at its next step (`cancel_requested`; "
                '`outcome: "cancel_requested"`, framecast\'s own value).',
                "content": {"application/json": {}},
            },
            **_KEYED,
            **_NO_REQUEST,
            **error_responses(
                {
                    409: "Already finished (`request_already_finished`, "
                    '`outcome: "not_cancellable"`); `error.request` is its state.'
                }
            ),
        },
    )
    def cancel(request_id: str, request: Request, owner: Owner) -> JSONResponse:
        """Cancel: a queued request never runs; a running one stops at its next step."""
        outcome = services.jobs.cancel(request_id, owner)
        if outcome is None:
            raise FramecastError(
                f"no request with id {request_id}", code="request_not_found", status=404
            )
        kind, job = outcome
        body = status_body(job, _base_url(request), services.jobs.queue_position(job))
        if kind is CancelOutcome.ALREADY_FINISHED:
            return error_response(
                409,
                "request_already_finished",
                f"request {job.id} is already {job.status.value} and cannot be cancelled",
                beside={"outcome": "not_cancellable"},  # RunComfy's value for a finished one
                request=body,
            )
        # 202: a running request is only asked to stop; its status shows when it has.
        # "outcome" as RunComfy's cancel answer ("cancelled"); "cancel_requested" is ours.
        if kind is CancelOutcome.CANCELLED:
            return JSONResponse({**body, "outcome": "cancelled"}, status_code=200)
        return JSONResponse({**body, "outcome": "cancel_requested"}, status_code=202)

    @app.get("/v1/models", tags=["models"], responses=_KEYED)
    def models(owner: Owner) -> dict[str, Any]:
        # Read afresh: a LoRA file copied into the folder is listed (and usable) at once.
        loras = lora_folder.names()
        return {
            "models": [
                {**spec.card(), **({"loras": loras} if "loras" in spec.fields else {})}
                for spec in specs
            ]
        }

    @app.get(
        "/v1/files/{key:path}",
        tags=["files"],
        response_model=None,
        responses={
            200: {"content": {"video/mp4": {}, "image/jpeg": {}}},
            206: {"description": "The requested byte range (HTTP Range requests)."},
            400: {"description": "A malformed Range header (plain text, from the file server)."},
            416: {"description": "A Range beyond the end of the file (plain text)."},
            **error_responses(
                {
                    403: "Expired (`link_expired`) or tampered (`invalid_signature`) link.",
                    404: "The file no longer exists (`file_not_found`).",
                    422: "`expires` or `signature` missing or not valid (`invalid_input`).",
                    500: "An unexpected server error (`internal_error`); it is logged.",
                }
            ),
        },
    )
    def files(
        key: str,
        expires: Annotated[int, Query()],
        signature: Annotated[str, Query()],
    ) -> Response:
        """Signed, expiring links to outputs; no header needed; Range requests supported."""
        # The store answers its own links; its LinkError reaches the client in the error shape.
        return services.storage.serve(key, expires, signature)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def _heartbeat_window() -> dt.timedelta:
        return dt.timedelta(seconds=3 * settings.heartbeat_seconds)

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=None,
        responses=error_responses(
            {
                503: "Database unreachable (`database_unreachable`) or no worker ready "
                "(`no_ready_worker`, with the live workers in `error.workers`)."
            }
        ),
    )
    def readyz() -> dict[str, Any] | JSONResponse:
        try:
            with services.db.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return error_response(
                503,
                "database_unreachable",
                f"the database is unreachable: {exc.__class__.__name__}",
            )
        live = services.registry.live(_heartbeat_window())
        workers = [
            {"id": w.id, "state": w.state, "engine": w.engine, "model": w.model, "serves": w.serves}
            for w in live
        ]
        unserved = [
            spec.id
            for spec in specs
            if not any(w.serves is None or spec.id in w.serves for w in live)
        ]
        if len(unserved) == len(specs):
            why = (
                f"no live worker serves {', '.join(unserved)}; their requests stay queued "
                "until one starts"
            )
            if not live:
                why = "no worker has sent a heartbeat recently; start one with `framecast worker`"
            return error_response(503, "no_ready_worker", why, workers=workers)
        if not any(w.state in {"idle", "busy"} for w in live):
            why = (
                "workers are still loading their engine"
                if live
                else "no worker has sent a heartbeat recently; start one with `framecast worker`"
            )
            return error_response(503, "no_ready_worker", why, workers=workers)
        # Ready while any model is served; a model no live worker serves is named, since its
        # requests wait until a worker for it starts.
        return {"status": "ready", "database": "ok", "workers": workers, "unserved": unserved}

    document_error_shape(app)
    install_playground(app)
    return app
