"""Log lines as JSON (FRAMECAST_LOG_FORMAT=json) with the request id on the lines about one."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from framecast.api.request_ids import RequestIdContext
from framecast.logs import make_handler, request_context

RID = "7c0e2a56-0000-4000-8000-000000000001"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    logger = logging.getLogger("framecast.test-logs")
    handler = make_handler("json", stream)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_request_id_inside_its_context_only(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    log.info("before")
    with request_context(RID):
        log.warning("claimed %s", "it", extra={"attempt": 2})
        try:
            raise ValueError("bad frame")
        except ValueError:
            log.exception("engine error")
    log.info("after")

    before, claimed, error, after = lines(stream)
    assert "request_id" not in before and "request_id" not in after
    assert claimed["request_id"] == RID and error["request_id"] == RID
    assert claimed["message"] == "claimed it"
    assert claimed["level"] == "WARNING" and claimed["logger"] == "framecast.test-logs"
    assert claimed["attempt"] == 2  # extra= fields are kept
    assert claimed["time"].endswith("+00:00")
    assert "ValueError: bad frame" in error["exception"]


def test_a_thread_run_in_a_copy_of_the_context_keeps_the_id(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    """As the worker's lease renewer runs: its lines are about the request too."""
    log, stream = captured
    with request_context(RID):
        copied = threading.Thread(target=contextvars.copy_context().run, args=(log.info, "copied"))
        plain = threading.Thread(target=log.info, args=("plain",))
        for thread in (copied, plain):
            thread.start()
        for thread in (copied, plain):
            thread.join()
    by_message = {line["message"]: line for line in lines(stream)}
    assert by_message["copied"]["request_id"] == RID
    assert "request_id" not in by_message["plain"]  # a bare thread starts with an empty context


def test_text_lines_name_the_request_once() -> None:
    stream = io.StringIO()
    handler = make_handler("text", stream)
    record = logging.makeLogRecord({"name": "x", "levelname": "INFO", "msg": "claimed"})
    with request_context(RID):
        handler.handle(record)
        handler.handle(logging.makeLogRecord({"msg": f"request {RID}: completed"}))
    first, second = stream.getvalue().splitlines()
    assert first.endswith(f"claimed [request {RID}]")
    assert second.count(RID) == 1  # already in the message: not repeated


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_api_middleware_scopes_the_id_to_request_routes(
    captured: tuple[logging.Logger, io.StringIO], anyio_backend: str
) -> None:
    log, stream = captured

    async def app(scope: Any, receive: Any, send: Any) -> None:
        log.info("handling %s", scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=RequestIdContext(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get(f"/v1/requests/{RID}/status")
        await client.get("/v1/models")
    about_request, other = lines(stream)
    assert about_request["request_id"] == RID
    assert "request_id" not in other
