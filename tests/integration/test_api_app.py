"""The app factory (framecast.api.app), in-process: services injected or built from settings,
the routes each router adds, the OpenAPI document and the offline docs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from framecast.api.app import create_app
from framecast.api.services import build_services
from framecast.db import migrate
from framecast.models import get_model

from .inprocess import (
    SUBMIT,
    SUBMIT_15,
    assert_error,
    client_for,
    make_app,
    services_of,
    settings_for,
)

pytestmark = pytest.mark.anyio

I2V = SUBMIT.removeprefix("/v1/models/")

# The documented operations the playground and RunComfy's clients rely on: (method, path) -> tag.
DOCUMENTED = {
    ("post", SUBMIT): "requests",
    ("post", SUBMIT_15): "requests",
    ("get", "/v1/requests/{request_id}/status"): "requests",
    ("get", "/v1/requests/{request_id}/result"): "requests",
    ("post", "/v1/requests/{request_id}/cancel"): "requests",
    ("get", "/v1/requests/{request_id}/status/stream"): "requests",
    ("get", "/v1/requests"): "requests",
    ("get", "/v1/models"): "models",
    ("get", "/v1/models/{model_id}"): "models",
    ("post", "/v1/videos"): "videos (OpenAI)",
    ("get", "/v1/videos"): "videos (OpenAI)",
    ("get", "/v1/videos/{video_id}"): "videos (OpenAI)",
    ("get", "/v1/videos/{video_id}/content"): "videos (OpenAI)",
    ("delete", "/v1/videos/{video_id}"): "videos (OpenAI)",
    ("get", "/v1/files/{key}"): "files",
    ("get", "/healthz"): "health",
    ("get", "/readyz"): "health",
}


async def test_the_openapi_document_lists_the_routes_with_their_tags(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with client_for(app, key=None) as c:
        doc = (await c.get("/openapi.json")).json()
    # Its description names every model served, as its declaration describes it.
    for spec in services_of(app).models:
        assert f"`{spec.id}`: {spec.description}" in doc["info"]["description"]
    operations = {
        (method, path): op["tags"]
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    assert {op: operations.get(op) for op in DOCUMENTED} == {
        op: [tag] for op, tag in DOCUMENTED.items()
    }
    submit = doc["paths"][SUBMIT]["post"]
    body = submit["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert schema["required"] == ["prompt", "image_url"]
    # 408: a body sent too slowly.
    assert set(submit["responses"]) == {
        "200", "400", "401", "408", "409", "413", "422", "429", "500", "503",
    }  # fmt: skip

    def statuses(method: str, path: str) -> set[str]:
        return set(doc["paths"][path][method]["responses"])

    # 422: a request id of a form this server never hands out; 429: too many waits open.
    for action, waits in (("status", {"429"}), ("result", set()), ("status/stream", {"429"})):
        assert statuses("get", f"/v1/requests/{{request_id}}/{action}") == {
            "200", "401", "404", "422", "500", *waits,
        }  # fmt: skip
    assert statuses("post", "/v1/requests/{request_id}/cancel") == {
        "200", "202", "401", "404", "409", "422", "500",
    }  # fmt: skip
    assert statuses("get", "/v1/requests") == {"200", "401", "422", "500"}
    # 422: a limit or offset out of range.
    assert statuses("get", "/v1/models") == {"200", "401", "422", "500"}
    assert statuses("get", "/v1/models/{model_id}") == {"200", "401", "404", "500"}
    assert "Retry-After" in submit["responses"]["429"]["headers"]
    headers = {p["name"] for p in submit["parameters"] if p["in"] == "header"}
    assert {"Idempotency-Key", "Prefer"} <= headers


async def test_the_docs_work_offline(tmp_path: Path) -> None:
    async with client_for(make_app(tmp_path), key=None) as c:
        docs = await c.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert "cdn." not in docs.text  # served from the package, not a CDN
        assert (await c.get("/redoc")).status_code == 200
        page = await c.get("/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"
    assert page.headers["content-type"].startswith("text/html")


async def test_injected_services_are_the_ones_the_routes_use(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    built = build_services(settings)
    migrate(built.db)
    # Serving one model only: its submit route exists, the other model's is an unknown model.
    services = dataclasses.replace(built, models=(get_model(I2V, built.settings),))
    app = create_app(settings, services)
    assert services_of(app) is services
    async with client_for(app) as c:
        cards = (await c.get("/v1/models")).json()["models"]
        assert [m["id"] for m in cards] == [I2V]
        r = await c.post(SUBMIT_15, json={"prompt": "p", "image": "data:,"})
        message = assert_error(r, 404, "model_not_found")["error"]["message"]
        assert message.endswith(f"it serves '{I2V}'")
        doc = (await c.get("/openapi.json")).json()
    assert SUBMIT in doc["paths"] and SUBMIT_15 not in doc["paths"]


def test_services_from_other_settings_are_refused(tmp_path: Path) -> None:
    services = build_services(settings_for(tmp_path))
    with pytest.raises(ValueError, match="pass the settings they were built from"):
        create_app(settings_for(tmp_path), services)


def test_building_the_app_migrates_the_database(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    # A fresh data folder: the request table exists only because create_app migrated it.
    assert services_of(app).jobs.get("no-such-request") is None


async def test_shutting_down_closes_the_database_connections(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    db = services_of(app).db
    async with app.router.lifespan_context(app):
        async with client_for(app) as c:
            assert (await c.get("/v1/requests/x/status")).status_code == 404
        assert pooled(db) == 1  # kept open while the app runs
    assert pooled(db) == 0


def pooled(db: Engine) -> int:
    """Open connections waiting in the engine's pool."""
    pool = db.pool
    assert isinstance(pool, QueuePool)
    checked_in: int = pool.checkedin()
    return checked_in
