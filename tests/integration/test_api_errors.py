"""The one error shape (framecast.api.errors), in-process: framecast's ``error`` object with
RunComfy's fields beside it (``error_code``, ``error_message``, ``detail`` on a 422) on every
error answer, whichever layer answered it (routing, the body cap, validation, a route, a crash);
never on a successful answer. Each route's own errors are in test_api_<router>.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from framecast.api.app import create_app
from framecast.api.errors import runcomfy_error_code
from framecast.api.services import build_services

from .inprocess import (
    SUBMIT,
    assert_error,
    client_for,
    data_uri,
    make_app,
    png,
    settings_for,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(tmp_path)) as c:
        yield c


async def test_routing_errors(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get("/v1/no-such-route"), 404, "not_found")
    assert body["error_code"] == 404001
    assert_error(await client.get("/v2/nothing"), 404, "not_found")
    assert (
        assert_error(await client.delete("/v1/models"), 405, "method_not_allowed")["error_code"]
        == 405001
    )
    assert_error(await client.delete("/v1/requests/x/status"), 405, "method_not_allowed")


async def test_413_too_large(tmp_path: Path) -> None:
    async with client_for(make_app(tmp_path, max_body_bytes=10_000)) as c:
        r = await c.post(SUBMIT, json={"prompt": "p", "image_url": "x" * 20_000})
    assert assert_error(r, 413, "request_too_large")["error_code"] == 413001


async def test_422_validation_carries_a_detail_array(client: httpx.AsyncClient) -> None:
    r = await client.post(SUBMIT, json={"prompt": 5, "image_url": data_uri(png()), "speed": "x"})
    body = assert_error(r, 422, "invalid_input")
    assert body["error_code"] == 422001
    detail = body["detail"]
    assert isinstance(detail, list) and len(detail) == len(body["error"]["details"]) == 2
    for entry in detail:
        assert set(entry) == {"loc", "msg", "type"}
        assert entry["loc"][0] == "body" and isinstance(entry["msg"], str) and entry["msg"]
    assert {tuple(e["loc"]) for e in detail} == {("body", "prompt"), ("body", "speed")}
    assert [e["msg"] for e in detail] == [d["message"] for d in body["error"]["details"]]


async def test_422_from_an_input_check_has_detail_too(client: httpx.AsyncClient) -> None:
    r = await client.post(SUBMIT, json={"prompt": "p", "image_url": "ftp://example.com/a.png"})
    body = assert_error(r, 422, "image_url_unsupported_scheme")
    assert body["detail"] == [
        {"loc": ["body"], "msg": body["error_message"], "type": "image_url_unsupported_scheme"}
    ]


async def test_an_unexpected_error_is_a_logged_500_that_leaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Services over a database that was never migrated: the request table is missing.
    settings = settings_for(tmp_path)
    async with client_for(create_app(settings, build_services(settings))) as c:
        r = await c.get("/v1/requests/some-id/status")
    body = assert_error(r, 500, "internal_error")
    assert body["error_code"] == 500001
    assert "requests" not in body["error"]["message"]  # no SQL, no table names
    assert any(
        rec.levelno == logging.ERROR and "GET /v1/requests/some-id/status" in rec.getMessage()
        for rec in caplog.records
    )


async def test_success_answers_carry_no_error_fields(client: httpx.AsyncClient) -> None:
    r = await client.post(SUBMIT, json={"prompt": "p", "image_url": data_uri(png())})
    assert r.status_code == 200, r.text
    answers = [r]
    request_id = r.json()["request_id"]
    for action in ("status", "result"):
        answers.append(await client.get(f"/v1/requests/{request_id}/{action}"))
    answers.append(await client.get("/v1/models"))
    answers.append(await client.post(f"/v1/requests/{request_id}/cancel"))
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert not {"error", "error_code", "error_message"} & set(answer.json())


def test_the_mapping_follows_runcomfys_tables() -> None:
    assert runcomfy_error_code(400, "bad_request") == 400001
    assert runcomfy_error_code(401, "unauthorized") == 401001
    assert runcomfy_error_code(403, "link_expired") == 403001
    assert runcomfy_error_code(404, "request_not_found") == 404001
    assert runcomfy_error_code(404, "model_not_found") == 400001
    assert runcomfy_error_code(422, "image_too_large") == 422001
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
    # FastAPI's own 422 shape is nowhere: every 422 here has the error shape.
    assert "HTTPValidationError" not in str(doc)
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert {"code", "message"} <= set(detail["required"])
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for code, response in op["responses"].items():
                content = response.get("content", {})
                if code.startswith(("4", "5")) and "application/json" in content:
                    ref = content["application/json"]["schema"]["$ref"]
                    # OpenAI's routes answer OpenAI's shape (framecast.api.openai_errors).
                    shape = "/OpenAIErrorBody" if path.startswith("/v1/videos") else "/ErrorBody"
                    assert ref.endswith(shape), (method, path, code)
