"""``GET /metrics``: Prometheus' text format, read from the database (``framecast.api.metrics``),
so every API node gives the fleet's figures; each process reuses a scrape for
FRAMECAST_METRICS_CACHE_SECONDS, and FRAMECAST_METRICS_TOKEN, when set, is the key to it."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from framecast.api import metrics
from framecast.api.errors import error_responses
from framecast.api.services import AppServices
from framecast.contract.errors import ErrorCode
from framecast.errors import FramecastError

router = APIRouter(tags=["health"])


def check_scraper(request: Request, services: AppServices) -> None:
    """With FRAMECAST_METRICS_TOKEN set, a scrape must present it as a bearer token (an API key
    is not enough: a scraper's credential should open nothing else); unset, anyone may."""
    token = services.settings.metrics_token
    if not token:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.encode()
    ):
        raise FramecastError(
            "/metrics needs FRAMECAST_METRICS_TOKEN: send it as 'Authorization: Bearer <token>'",
            code=ErrorCode.UNAUTHORIZED,
            status=401,
        )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Queue depth and age per model, wait and run time histograms, "
            "outcomes by status and error code, worker states, peak GPU memory per request.",
            "content": {metrics.CONTENT_TYPE: {}},
        },
        **error_responses(
            {401: "FRAMECAST_METRICS_TOKEN is set and the request did not present it."}
        ),
    },
    dependencies=[Depends(check_scraper)],
)
def prometheus_metrics(services: AppServices) -> Response:
    """Prometheus metrics: open, or with FRAMECAST_METRICS_TOKEN as a bearer token when set."""
    body = services.metrics_cache.get(
        lambda: metrics.render(
            services.db,
            [spec.id for spec in services.models],
            services.heartbeat_window,
            services.node_counters,
        )
    )
    return Response(body, media_type=metrics.CONTENT_TYPE)
