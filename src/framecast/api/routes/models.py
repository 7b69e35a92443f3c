"""Submitting requests (``POST /v1/models/<model id>``, one route per served model) and the
models' cards (``GET /v1/models``, ``GET /v1/models/<model id>``, as RunComfy's catalog)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from framecast.api.admission import SUBMIT_LIMIT_ERRORS, IdempotencyKey, InsertHook, admit, chain
from framecast.api.auth import KEYED, Owner
from framecast.api.bodies import OffLoopJSONRoute
from framecast.api.deadlines import StartTimeout
from framecast.api.errors import error_response, error_responses
from framecast.api.services import AppServices, BaseUrl, Services
from framecast.api.waiting import PreferWait
from framecast.contract.errors import ErrorCode
from framecast.contract.requests import Submitted
from framecast.errors import FramecastError, InputError
from framecast.images import check_image
from framecast.logs import bind_request_id
from framecast.models import ModelInput, ModelSpec
from framecast.queue.views import submitted
from framecast.webhooks.outbox import WebhookTarget
from framecast.webhooks.outbox import register as register_webhook
from framecast.webhooks.requests import IntermediateParam, WebhookParam, webhook_target

log = logging.getLogger("framecast.api")

_SUBMIT_ERRORS = {
    **KEYED,
    **error_responses(
        {
            400: "A body that is not text at all: not UTF-8 (`bad_request`).",
            408: "The body arrived too slowly (`request_timeout`: under "
            "FRAMECAST_BODY_MIN_BYTES_PER_SECOND, or not within FRAMECAST_BODY_TIMEOUT_SECONDS); "
            "the connection is closed.",
            413: "The body is larger than FRAMECAST_MAX_BODY_BYTES (`request_too_large`).",
            503: "Too many large bodies in flight (`server_busy`, "
            "FRAMECAST_MAX_INFLIGHT_BODY_BYTES), or no live worker serves the model where the "
            "server refuses such submits (`no_worker_for_model`, "
            "FRAMECAST_NO_WORKER_SUBMIT=refuse; by default they are queued, the answer carrying "
            "a `note`); `Retry-After` says when to try again.",
            422: "Invalid input (a body that is not valid JSON is `invalid_input` too, its "
            "message saying where it breaks; an X-Fal-Request-Timeout out of range too), or an "
            "image that cannot be fetched or decoded; the code says which (`invalid_input`, "
            "`image_fetch_failed`, "
            "`image_too_large_to_decode`, ...).",
        }
    ),
    **SUBMIT_LIMIT_ERRORS,
}


async def submit(
    spec: ModelSpec,
    body: ModelInput,
    owner: str,
    services: Services,
    base_url: str,
    webhook: WebhookTarget | None = None,
    request_id: str | None = None,
    guard: InsertHook | None = None,
    start_timeout: dt.timedelta | None = None,
    image: bytes | None = None,
) -> Submitted:
    """Fetch and check the image, store it, queue the request: a bad image is refused now,
    not in the worker, and an expiring image URL cannot break a queued request.
    ``request_id``: the id to give it (an Idempotency-Key's claim); ``guard``: runs in the
    INSERT's transaction and may refuse it (the key's active-request limit);
    ``start_timeout``: how long it may wait to start (X-Fal-Request-Timeout); ``image``: the
    image itself, uploaded with the request (``POST /v1/videos``), instead of fetching the
    input's URL."""
    if body.lora_choices:  # before fetching anything: a wrong name is the cheaper error
        unknown = await run_in_threadpool(services.loras.unknown, body.lora_choices)
        if unknown is not None:
            raise unknown
    if body.required_stages:  # a worker that cannot run it would fail the request later
        missing = await run_in_threadpool(
            services.registry.missing_stages,
            spec.id,
            body.required_stages,
            services.heartbeat_window,
        )
        if missing is not None:
            raise InputError(missing, field="super_resolution")
    data = image if image is not None else (await services.fetcher.fetch(body.image_source)).data
    # Decoded in full to refuse a broken image now rather than in the worker, and dropped:
    # only its format is kept. Sized from the header first (FRAMECAST_MAX_DECODE_BYTES), in a
    # thread, at most FRAMECAST_DECODE_CONCURRENCY at once: together they bound the memory.
    settings = services.settings
    checked = await anyio.to_thread.run_sync(
        partial(
            check_image,
            data,
            max_pixels=settings.max_image_pixels,
            max_decode_bytes=settings.max_decode_bytes,
        ),
        limiter=services.decode_limiter,
    )
    job_id = request_id or str(uuid.uuid4())
    bind_request_id(job_id)  # every log line from here on is about this request
    image_key = f"inputs/{job_id}/image.{checked.format.lower()}"
    await run_in_threadpool(services.storage.put_bytes, image_key, data)
    job = await run_in_threadpool(
        lambda: services.jobs.submit(
            owner=owner,
            model=spec.id,
            input=body.stored(),
            image_key=image_key,
            request_id=job_id,
            # The webhook is recorded with the request, in one transaction: no status change
            # can happen before it is there to be reported.
            also=chain(guard, partial(register_webhook, target=webhook) if webhook else None),
            start_timeout=start_timeout,
        )
    )
    log.info("queued for %s", spec.id)
    return submitted(base_url, job.id)


def _submit_route(spec: ModelSpec) -> Callable[..., Awaitable[JSONResponse]]:
    async def route(
        request: Request,
        body: ModelInput,
        owner: Owner,
        services: AppServices,
        base_url: BaseUrl,
        key: IdempotencyKey,
        wait: PreferWait,
        start_timeout: StartTimeout,
        webhook: WebhookParam = None,
        webhook_intermediate_status: IntermediateParam = False,
    ) -> JSONResponse:
        target = await webhook_target(
            webhook,
            webhook_intermediate_status,
            owner=owner,
            keys=services.keys,
            base_url=base_url,
            allow_private=services.settings.allow_private_urls,
        )
        return await admit(
            request,
            model=spec.id,
            body=body,
            owner=owner,
            services=services,
            base_url=base_url,
            key=key,
            wait=wait,
            make=lambda request_id, guard: submit(
                spec, body, owner, services, base_url, target, request_id, guard, start_timeout
            ),
        )

    # FastAPI reads the body's schema off the annotation: this route's own model's input.
    route.__annotations__["body"] = spec.input
    route.__doc__ = (
        f"Queue a request for {spec.id} ({spec.description}); answers at once with its "
        "request_id and URLs (with `Prefer: wait=N`: once it has ended, or after N seconds, "
        "with its status or result beside them). While no live worker serves the model the "
        "request is queued all the same, and the answer carries a `note` saying so."
    )
    return route


_cards = APIRouter()


@_cards.post("/v1/models/{model_id:path}", tags=["requests"], include_in_schema=False)
def unknown_model(model_id: str, owner: Owner, services: AppServices) -> JSONResponse:
    served = ", ".join(f"'{spec.id}'" for spec in services.models)
    return error_response(
        404,
        ErrorCode.MODEL_NOT_FOUND,
        f"this server does not serve '{model_id}'; it serves {served}",
    )


def _card(spec: ModelSpec, services: Services) -> dict[str, Any]:
    # Read afresh: a LoRA file copied into the folder is listed (and usable) at once.
    loras = services.loras.names() if "loras" in spec.fields else None
    return {**spec.card(), **({"loras": loras} if loras is not None else {})}


@_cards.get(
    "/v1/models",
    tags=["models"],
    responses={
        **KEYED,
        **error_responses({422: "`limit` or `offset` out of range (`invalid_input`)."}),
    },
)
def models(
    owner: Owner,
    services: AppServices,
    search: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Only models whose id or description contains this text (any case).",
        ),
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=1000, description="At most this many models.")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10_000, description="Skip this many models first.")] = 0,
) -> dict[str, Any]:
    """The served models' cards (RunComfy's catalog), in the order the server lists them;
    ``total`` counts those matching ``search`` before ``limit`` and ``offset``."""
    needle = (search or "").casefold()
    found = [
        spec
        for spec in services.models
        if needle in spec.id.casefold() or needle in spec.description.casefold()
    ]
    page = found[offset : None if limit is None else offset + limit]
    return {"models": [_card(spec, services) for spec in page], "total": len(found)}


@_cards.get(
    "/v1/models/{model_id:path}",
    tags=["models"],
    responses={
        **KEYED,
        **error_responses({404: "This server does not serve that model (`model_not_found`)."}),
    },
)
def model_card(model_id: str, owner: Owner, services: AppServices) -> dict[str, Any]:
    """One model's card: its description, input and output schemas and sizes, as RunComfy's
    catalog answers ``GET /v1/models/{model_id}``."""
    for spec in services.models:
        if spec.id == model_id:
            return _card(spec, services)
    served = ", ".join(f"'{spec.id}'" for spec in services.models)
    raise FramecastError(
        f"this server does not serve '{model_id[:200]}'; it serves {served}",
        code=ErrorCode.MODEL_NOT_FOUND,
        status=404,
    )


def router(specs: Sequence[ModelSpec]) -> APIRouter:
    """One submit route per model (each documents its own input schema), then the rest: the
    catch-all for unknown models must come after the models' own routes."""
    # A submit's body may hold a whole image as a data: URI: parsed off the event loop.
    models_router = APIRouter(route_class=OffLoopJSONRoute)
    for spec in specs:
        models_router.add_api_route(
            f"/v1/models/{spec.id}",
            _submit_route(spec),
            methods=["POST"],
            tags=["requests"],
            name=f"submit {spec.id}",
            # The route answers a JSONResponse (admission's); the model describes it.
            response_model=Submitted,
            responses={
                200: {
                    "description": "Queued. With `Prefer: wait=N`, the request's status (its "
                    "result once completed) comes beside these fields."
                },
                **_SUBMIT_ERRORS,
            },
        )
    models_router.include_router(_cards)
    return models_router
