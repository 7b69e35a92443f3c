"""The status stream's answer in the OpenAPI document: each event carries the status body
(:class:`~framecast.contract.requests.RequestStatus`, the status route's response model) as
its ``data``. Checked against real events by the tests (test_api_stream_schema.py)."""

from __future__ import annotations

from typing import Any

from framecast.contract.requests import RequestStatus

STATUS_EVENT_STREAM: dict[str, Any] = {
    # OpenAPI 3.2's way to describe a stream item by item (what FastAPI writes for its own
    # server-sent event routes): each event is `event: status` with the status body as JSON.
    "itemSchema": {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": "status"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                # The component the status route's response model puts in the document.
                "contentSchema": {"$ref": f"#/components/schemas/{RequestStatus.__name__}"},
            },
        },
    }
}
"""The ``text/event-stream`` media type of the status stream's 200 answer."""
