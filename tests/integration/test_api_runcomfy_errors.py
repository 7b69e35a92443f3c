"""RunComfy's error fields on every error answer (issue 13), in-process over httpx's ASGI
transport: ``error_code`` (RunComfy's six-digit number), ``error_message`` (text) and, on a 422,
``detail``, beside framecast's own ``error`` object; and ``outcome`` on cancel answers."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from framecast.api.errors import runcomfy_error_code

from .inprocess import SUBMIT, client_for, make_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(tmp_path)) as c:
        yield c


def image_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def assert_runcomfy_error(r: httpx.Response, status: int, error_code: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    # framecast's own object keeps its codes ...
    assert body["error"]["code"] == code
    # ... and RunComfy's fields sit beside it: what its clients read.
    assert body["error_code"] == error_code and type(body["error_code"]) is int
    assert isinstance(body["error_message"], str) and body["error_message"]
    assert body["error_message"] == body["error"]["message"]
    return body


async def test_401_without_a_key_or_with_a_wrong_one(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    for key in (None, "not-the-key"):
        async with client_for(app, key) as c:
            r = await c.get("/v1/requests/nope/status")
        body = assert_runcomfy_error(r, 401, 401001, "unauthorized")
        assert "detail" not in body


async def test_404_unknown_request_and_unknown_route(client: httpx.AsyncClient) -> None:
    for path in ("/v1/requests/nope/status", "/v1/requests/nope/result"):
        assert_runcomfy_error(await client.get(path), 404, 404001, "request_not_found")
    r = await client.post("/v1/requests/nope/cancel")
    assert_runcomfy_error(r, 404, 404001, "request_not_found")
    r = await client.get("/v1/no-such-route")
    assert r.status_code == 404 and r.json()["error_code"] == 404001


async def test_an_unknown_model_is_runcomfys_invalid_resource_identifier(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/v1/models/no/such-model", json={"prompt": "p"})
    assert_runcomfy_error(r, 404, 400001, "model_not_found")


async def test_405_gets_the_nearest_class(client: httpx.AsyncClient) -> None:
    r = await client.delete("/v1/models")
    assert_runcomfy_error(r, 405, 405001, "method_not_allowed")


async def test_413_too_large(tmp_path: Path) -> None:
    async with client_for(make_app(tmp_path, max_body_bytes=10_000)) as c:
        r = await c.post(SUBMIT, json={"prompt": "p", "image_url": "x" * 20_000})
    body = assert_runcomfy_error(r, 413, 413001, "request_too_large")
    assert "detail" not in body


async def test_422_validation_carries_a_detail_array(client: httpx.AsyncClient) -> None:
    r = await client.post(SUBMIT, json={"prompt": 5, "image_url": image_uri(), "speed": "x"})
    body = assert_runcomfy_error(r, 422, 422001, "invalid_input")
    detail = body["detail"]
    assert isinstance(detail, list) and len(detail) == len(body["error"]["details"]) == 2
    for entry in detail:
        assert set(entry) == {"loc", "msg", "type"}
        assert entry["loc"][0] == "body" and isinstance(entry["msg"], str) and entry["msg"]
    assert {tuple(e["loc"]) for e in detail} == {("body", "prompt"), ("body", "speed")}
    assert [e["msg"] for e in detail] == [d["message"] for d in body["error"]["details"]]


async def test_422_from_an_input_check_has_detail_too(client: httpx.AsyncClient) -> None:
    r = await client.post(SUBMIT, json={"prompt": "p", "image_url": "ftp://example.com/a.png"})
    body = assert_runcomfy_error(r, 422, 422001, "image_url_unsupported_scheme")
    assert body["detail"] == [
        {"loc": ["body"], "msg": body["error_message"], "type": "image_url_unsupported_scheme"}
    ]


async def test_success_answers_carry_no_error_code_and_cancel_has_an_outcome(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(SUBMIT, json={"prompt": "p", "image_url": image_uri()})
    assert r.status_code == 200, r.text
    assert "error_code" not in r.json() and "error_message" not in r.json()
    request_id = r.json()["request_id"]
    for action in ("status", "result"):
        r = await client.get(f"/v1/requests/{request_id}/{action}")
        assert r.status_code == 200 and "error_code" not in r.json()
    r = await client.get("/v1/models")
    assert r.status_code == 200 and "error_code" not in r.json()

    # Queued: cancelled at once, 200, RunComfy's outcome "cancelled".
    r = await client.post(f"/v1/requests/{request_id}/cancel")
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["outcome"] == "cancelled" and cancelled["status"] == "cancelled"
    assert "error_code" not in cancelled

    # Finished: framecast's 409, RunComfy's outcome "not_cancellable" and its error fields.
    r = await client.post(f"/v1/requests/{request_id}/cancel")
    body = assert_runcomfy_error(r, 409, 409001, "request_already_finished")
    assert body["outcome"] == "not_cancellable"
    assert body["error"]["request"]["status"] == "cancelled"


def test_the_mapping_follows_runcomfys_tables() -> None:
    assert runcomfy_error_code(400, "bad_request") == 400001
    assert runcomfy_error_code(403, "link_expired") == 403001
    assert runcomfy_error_code(500, "internal_error") == 500001
    assert runcomfy_error_code(503, "no_ready_worker") == 503001
    assert runcomfy_error_code(429, "too_many_requests") == 429001


async def test_the_openapi_error_body_declares_runcomfys_fields(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/openapi.json")).json()
    error = doc["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "error_code", "error_message"}
    assert {"error_code", "error_message", "detail"} <= set(error["properties"])
    assert error["properties"]["error_code"]["type"] == "integer"
