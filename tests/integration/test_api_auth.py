"""API keys on every keyed route (framecast.api.auth), in-process: no key, a wrong, malformed or
revoked one is a 401 in the error shape, before anything else about the request is looked at."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from .inprocess import SUBMIT, SUBMIT_15, assert_error, client_for, make_app, services_of, submit

pytestmark = pytest.mark.anyio

KEYED_ROUTES = [
    ("POST", SUBMIT),
    ("POST", SUBMIT_15),
    ("POST", "/v1/models/acme/unknown-model"),
    ("GET", "/v1/models"),
    ("GET", "/v1/requests/some-id/status"),
    ("GET", "/v1/requests/some-id/result"),
    ("POST", "/v1/requests/some-id/cancel"),
    ("GET", "/v1/requests/some-id/status/stream"),
    ("GET", "/v1/requests"),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return make_app(tmp_path_factory.mktemp("api"))


@pytest.mark.parametrize(("method", "path"), KEYED_ROUTES)
async def test_every_keyed_route_refuses_a_missing_or_wrong_key(
    app: FastAPI, method: str, path: str
) -> None:
    # The body is invalid too, and the request id unknown: the key is checked first.
    headers = {
        "no header": {},
        "wrong key": {"Authorization": "Bearer not-a-key"},
        "another scheme": {"Authorization": "Basic in-process-test-key"},
        "no key after the scheme": {"Authorization": "Bearer   "},
    }
    async with client_for(app, key=None) as c:
        for why, header in headers.items():
            r = await c.request(method, path, json={"prompt": 5}, headers=header)
            body = assert_error(r, 401, "unauthorized")
            missing = why != "wrong key"
            expected = "missing API key" if missing else "invalid or revoked API key"
            assert body["error"]["message"].startswith(expected), (why, body)


async def test_the_scheme_is_case_insensitive(app: FastAPI) -> None:
    async with client_for(app, key=None) as c:
        r = await c.get("/v1/models", headers={"Authorization": "bearer in-process-test-key"})
    assert r.status_code == 200, r.text


async def test_a_created_key_works_until_it_is_revoked(app: FastAPI) -> None:
    keys = services_of(app).keys
    new = keys.create("ci")
    async with client_for(app, new.secret) as c:
        request_id = await submit(c)
        assert (await c.get(f"/v1/requests/{request_id}/status")).status_code == 200
        assert keys.revoke(new.record.id)
        r = await c.get(f"/v1/requests/{request_id}/status")
    assert assert_error(r, 401, "unauthorized")["error"]["message"] == "invalid or revoked API key"


async def test_the_routes_without_a_key(app: FastAPI) -> None:
    async with client_for(app, key=None) as c:
        for path in ("/healthz", "/openapi.json", "/docs", "/"):
            assert (await c.get(path)).status_code == 200, path
        # A signed link is its own credential: no key needed, and a bad link is a 403, not a 401.
        r = await c.get("/v1/files/outputs/x/video.mp4?expires=1&signature=abc")
    assert_error(r, 403, "invalid_signature")


async def test_the_openapi_document_declares_the_key_on_keyed_routes_only(
    app: FastAPI,
) -> None:
    async with client_for(app, key=None) as c:
        doc = (await c.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: from FRAMECAST_API_KEYS or `framecast keys create`.",
    }
    keyed = {
        (method.upper(), path)
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == [{"apiKey": []}]
    }
    documented = {(m, p.replace("some-id", "{request_id}")) for m, p in KEYED_ROUTES}
    # OpenAI's routes answer their 401 in OpenAI's shape (tests/integration/test_openai_videos.py).
    openai = {
        ("POST", "/v1/videos"),
        ("GET", "/v1/videos"),
        ("GET", "/v1/videos/{video_id}"),
        ("GET", "/v1/videos/{video_id}/content"),
        ("DELETE", "/v1/videos/{video_id}"),
    }
    catalog = {("GET", "/v1/models/{model_id}")}
    assert keyed == documented - {("POST", "/v1/models/acme/unknown-model")} | openai | catalog
    for method, path in keyed:
        assert "401" in doc["paths"][path][method.lower()]["responses"]
