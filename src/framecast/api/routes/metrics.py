"""``GET /metrics``: Prometheus' text format, read from the database at each scrape
(``framecast.metrics``), so every API node gives the fleet's figures."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from framecast import metrics
from framecast.api.services import AppServices

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Queue depth and age per model, wait and run time histograms, "
            "outcomes by status and error code, worker states, peak GPU memory per request.",
            "content": {metrics.CONTENT_TYPE: {}},
        }
    },
)
def prometheus_metrics(services: AppServices) -> Response:
    """Prometheus metrics (no API key: scrape it from inside your network)."""
    body = metrics.render(
        services.db, [spec.id for spec in services.models], services.heartbeat_window
    )
    return Response(body, media_type=metrics.CONTENT_TYPE)
