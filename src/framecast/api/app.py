"""The HTTP API: an app factory, nothing built at import time. It never runs the model.

The routes live in ``framecast.api.routes``, one router per concern; a new feature is a new
router module and one ``include_router`` line below. Routes reach the database, the store and
the settings only through ``AppServices`` (``framecast.api.services``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

import anyio
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse
from fastapi_offline import FastAPIOffline

from framecast import __version__
from framecast.api.auth import owner_for_header
from framecast.api.errors import document_error_shape, install_error_handlers
from framecast.api.limits import BodySizeLimit, BodyTiming
from framecast.api.openai_errors import OpenAIErrors
from framecast.api.request_ids import RequestIdContext
from framecast.api.routes import (
    files,
    health,
    listing,
    metrics,
    models,
    requests,
    stream,
    videos,
)
from framecast.api.services import Services, build_services
from framecast.db import migrate
from framecast.models import ModelSpec
from framecast.playground import install_playground
from framecast.settings import Settings

log = logging.getLogger("framecast.api")

OFFLINE_DOCS = "/static-offline-docs"
"""Where fastapi-offline serves Swagger UI's and ReDoc's files."""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.services
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_expire_overdue, services)
            yield
            tasks.cancel_scope.cancel()
    finally:
        await services.aclose()


async def _expire_overdue(services: Services) -> None:
    """Cancel, as expired, queued requests past their start deadline, so that their status
    and webhooks say so even while no worker runs (every API node does; each change is one
    guarded transition, so they never both make it)."""
    while True:
        await anyio.sleep(services.settings.poll_seconds)
        try:
            await run_in_threadpool(services.jobs.expire_overdue)
        except Exception:  # a database hiccup: the next round tries again
            log.exception("could not expire overdue requests; retrying")


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """The API for ``settings``. ``services``: what its routes use, built from ``settings`` (and
    the database migrated) when not given; given ones must be built from these same settings and
    their database already migrated. Either way the app closes them when it shuts down."""
    if services is None:
        services = build_services(settings)
        migrate(services.db)
    elif services.settings is not settings:
        raise ValueError(
            "create_app: the services were built from other settings; pass the settings they "
            "were built from (services.settings)"
        )
    # Swagger UI and ReDoc from fastapi-offline's bundled files: /docs works with no internet.
    app = FastAPIOffline(
        title="framecast",
        version=__version__,
        description=_description(services.models),
        lifespan=_lifespan,
        swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
        static_url=OFFLINE_DOCS,
        redoc_url=None,  # _install_redoc's instead
    )
    app.state.services = services
    app.add_middleware(
        BodySizeLimit,
        limit=settings.body_limit,
        inflight_limit=settings.max_inflight_body_bytes,
        key_share=settings.inflight_body_share,
        # The key is checked before a body is read or any of the budget reserved.
        authenticate=partial(owner_for_header, services.keys),
        timing=BodyTiming(settings.body_timeout_seconds, settings.body_min_bytes_per_second),
        on_slow_body=services.node_counters.count_slow_body,
    )
    app.add_middleware(RequestIdContext)
    # Outermost: it also reshapes the errors the middlewares above answer on /v1/videos.
    app.add_middleware(OpenAIErrors)
    install_error_handlers(app, {f"/v1/models/{spec.id}": spec.fields for spec in services.models})

    app.include_router(models.router(services.models))
    app.include_router(requests.router)
    app.include_router(stream.router)
    app.include_router(listing.router)
    app.include_router(videos.router)
    app.include_router(files.router)
    app.include_router(health.router)
    app.include_router(metrics.router)

    document_error_shape(app)
    _install_redoc(app)
    install_playground(app)
    return app


def _description(specs: Sequence[ModelSpec]) -> str:
    """The OpenAPI document's description: the models served, as their declarations say."""
    models = "\n".join(f"- `{spec.id}`: {spec.description}" for spec in specs)
    return f"RunComfy-compatible image-to-video API. Models (`POST /v1/models/<id>`):\n\n{models}"


def _install_redoc(app: FastAPI) -> None:
    """fastapi-offline's /redoc page, with a Content-Security-Policy that lets images come from
    this server only. The bundled ReDoc draws an "API docs by Redocly" badge whose image comes
    from cdn.redoc.ly whatever its options say; with the policy the browser never asks for it
    (the badge drops an image that fails to load), so the page makes no request off the machine."""

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{OFFLINE_DOCS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{OFFLINE_DOCS}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page

    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
