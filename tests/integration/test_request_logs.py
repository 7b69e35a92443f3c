"""FRAMECAST_LOG_FORMAT=json through a real submit and a real worker: every line about the
request, the API's and the worker's, carries its id."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from framecast.logs import make_handler
from tests.integration.inprocess import client_for, make_app, run_worker, submit


@pytest.mark.anyio
async def test_every_line_about_a_request_carries_its_id(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = make_handler("json", stream)
    logger = logging.getLogger("framecast")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        app = make_app(tmp_path)
        async with client_for(app) as client:
            request_id = await submit(client)
            run_worker(app)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    about = [line for line in lines if line.get("request_id") == request_id]
    messages = " | ".join(line["message"] for line in about)
    assert {"framecast.api", "framecast.worker.loop"} <= {line["logger"] for line in about}, (
        messages
    )
    assert "queued" in messages and "claimed" in messages and "completed" in messages
    # Nothing that names the request lacks its id (or carries another one).
    named = [line for line in lines if request_id in line["message"]]
    assert named and all(line.get("request_id") == request_id for line in named), named
