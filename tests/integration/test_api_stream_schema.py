"""The status stream's events against what the OpenAPI document declares for them: each event
must be an item of the route's ``text/event-stream`` ``itemSchema``, and its ``data`` the status
body the document describes, in every state (queued, running, cancelled while running or while
queued, failed, completed). The status route's answers are checked against the same schema."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI

# jsonschema comes with schemathesis, without type stubs.
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from framecast.client.sse import EventDecoder

from .inprocess import client_for, make_app, services_of, submit
from .test_api_stream import run_worker

pytestmark = pytest.mark.anyio

STREAM = "/v1/requests/{request_id}/status/stream"
STATUS = "/v1/requests/{request_id}/status"


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return make_app(tmp_path, poll_seconds=0.02)


class Declared:
    """The schemas the app's own document declares for a stream's events and their data."""

    def __init__(self, document: dict[str, Any]) -> None:
        components = {"components": document["components"]}  # where the $refs point
        media = document["paths"][STREAM]["get"]["responses"]["200"]["content"]
        item = media["text/event-stream"]["itemSchema"]
        self.event = Draft202012Validator({**item, **components})
        content = item["properties"]["data"]["contentSchema"]
        self.data = Draft202012Validator({**content, **components})
        answer = document["paths"][STATUS]["get"]["responses"]["200"]["content"]
        self.status = Draft202012Validator({**answer["application/json"]["schema"], **components})
        body = document["components"]["schemas"]["RequestStatus"]
        self.fields = set(body["properties"])

    def check_events(self, text: str) -> list[dict[str, Any]]:
        """Every event of a stream's text, checked; their data."""
        decoder = EventDecoder()
        bodies = []
        for line in text.splitlines():
            event = decoder.feed(line)
            if event is None:
                continue
            item = {"event": event.event, "data": event.data}
            self.event.validate(item)
            body = json.loads(event.data)
            self.check_body(body)
            bodies.append(body)
        assert bodies, text
        return bodies

    def check_body(self, body: dict[str, Any]) -> None:
        self.data.validate(body)
        self.status.validate(body)
        # Open to new fields for clients, but none may go undocumented here.
        assert set(body) <= self.fields, set(body) - self.fields


async def test_every_event_is_what_the_document_declares(app: FastAPI) -> None:
    declared = Declared(app.openapi())
    services = services_of(app)
    async with client_for(app) as client:
        # Queued with no worker (its note), then rendered to the end.
        rendered = await submit(client, num_frames=9)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, run_worker, app)
            r = await client.get(STREAM.format(request_id=rendered))
        statuses = [body["status"] for body in declared.check_events(r.text)]
        assert statuses[0] in {"in_queue", "in_progress"} and statuses[-1] == "completed"
        assert "in_progress" in statuses

        # Cancelled while queued; then one claimed, asked to cancel (cancel_requested) and
        # cancelled; one failed. Driven through the store, each state read by the stream.
        jobs = services.jobs
        queued = await submit(client)
        await client.post(f"/v1/requests/{queued}/cancel")
        running = await submit(client)
        failing = await submit(client)
        bodies: dict[str, list[dict[str, Any]]] = {}

        async def follow(request_id: str) -> None:
            r = await client.get(STREAM.format(request_id=request_id))
            bodies[request_id] = declared.check_events(r.text)

        def work() -> None:
            first = jobs.claim("w")
            assert first is not None and first.request_id == running
            time.sleep(0.2)
            jobs.cancel(running, first.job.owner)
            # Until the watcher has read it, then a moment for the stream to send it.
            seen = time.monotonic() + 30
            while time.monotonic() < seen:
                latest = services.watch.latest(running)
                if latest is not None and latest.job.cancel_requested_at is not None:
                    break
                time.sleep(0.01)
            time.sleep(0.2)
            jobs.finish_cancelled(first)
            second = jobs.claim("w")
            assert second is not None and second.request_id == failing
            time.sleep(0.2)
            jobs.fail(second, "engine_error", "out of memory")

        async with anyio.create_task_group() as tg:
            for request_id in (queued, running, failing):
                tg.start_soon(follow, request_id)
            tg.start_soon(anyio.to_thread.run_sync, work)
        assert [b["status"] for b in bodies[queued]] == ["cancelled"]
        assert bodies[queued][0]["started_at"] is None
        assert bodies[running][-1]["status"] == "cancelled"
        assert any(b.get("cancel_requested") for b in bodies[running]), bodies[running]
        assert bodies[failing][-1]["error"] == {"code": "engine_error", "message": "out of memory"}

        # The status route answers the same bodies, in the same schema.
        bodies[rendered] = [{"status": statuses[-1]}]
        for request_id, events in bodies.items():
            r = await client.get(STATUS.format(request_id=request_id))
            declared.check_body(r.json())
            assert events[-1].items() <= r.json().items()  # the stream's last word, exactly


async def test_a_stream_event_the_document_does_not_allow_is_caught(app: FastAPI) -> None:
    """The check itself: the shapes the document used to declare (the whole stream a string,
    nothing said of the events) or a body it does not describe fail it."""
    declared = Declared(app.openapi())
    async with client_for(app) as client:
        body = (await client.get(STATUS.format(request_id=await submit(client)))).json()
    with pytest.raises(AssertionError):
        declared.check_body({**body, "surprise": 1})
    assert not Draft202012Validator({"type": "string"}).is_valid(body)
    assert not declared.event.is_valid({"event": "status", "data": body})
    assert not declared.data.is_valid({**body, "status": "finished"})


def test_the_waiting_routes_document_their_429(tmp_path: Path) -> None:
    paths = make_app(tmp_path).openapi()["paths"]
    for path in (STREAM, STATUS):
        refused = paths[path]["get"]["responses"]["429"]
        assert "Retry-After" in refused["headers"], path
        assert "too_many_streams" in refused["description"]
