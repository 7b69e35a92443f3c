"""The API in-process, over httpx's ASGI transport: no server process, the real app, a real
SQLite database and local store in the test's folder, and (where a test needs a finished
request) a real worker with the preview engine in this process."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from PIL import Image

from framecast.api.app import create_app
from framecast.api.errors import runcomfy_error_code
from framecast.api.services import Services
from framecast.engines.preview import PreviewEngine
from framecast.settings import Settings
from framecast.worker.loop import Worker

from ..sqlite_template import seed

KEY = "in-process-test-key"
OTHER_KEY = "in-process-other-key"
"""A second key: its owner must not see the first key's requests."""
SUBMIT = "/v1/models/tencent/hunyuan/image-to-video"
SUBMIT_15 = "/v1/models/tencent/hunyuan-video-v1.5/image-to-video"


def settings_for(tmp_path: Path, **settings: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "api_keys": [KEY, OTHER_KEY]}
    return Settings(**{**values, **settings})


MADE_APPS: list[FastAPI] = []
"""Apps made during the running test: the ``_apps_shut_down`` fixture (conftest.py) runs their
lifespan's end after it, as uvicorn would, so each one's database engine, HTTP client and
watcher thread are closed rather than left to the garbage collector."""


def make_app(tmp_path: Path, **settings: Any) -> FastAPI:
    values = settings_for(tmp_path, **settings)
    if not values.database_url:
        seed(values.data_dir / "framecast.db")  # migrated already (tests/sqlite_template.py)
    app = create_app(values)
    MADE_APPS.append(app)
    return app


async def shut_down(app: FastAPI) -> None:
    """The app's lifespan, as a server runs it: nothing to start, its services closed at the end."""
    async with app.router.lifespan_context(app):
        pass


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


def client_for(app: FastAPI, key: str | None = KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        # raise_app_exceptions=False: an unhandled error is the API's 500, as a client sees it.
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {key}"} if key else {},
        timeout=30,
    )


def png(size: tuple[int, int] = (64, 36)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


SMALL = {
    SUBMIT: {"image_url": data_uri(png()), "resolution": "360p", "num_frames": 5},
    SUBMIT_15: {"image": data_uri(png()), "resolution": "480p", "num_frames": 5},
}
"""Fields for a request each model's preview renders in a fraction of a second."""


async def submit(client: httpx.AsyncClient, path: str = SUBMIT, **fields: Any) -> str:
    """Queue a small request for a generated PNG; its request id."""
    body = {"prompt": "a slow push in", **SMALL[path], **fields}
    r = await client.post(path, json=body)
    assert r.status_code == 200, r.text
    request_id: str = r.json()["request_id"]
    return request_id


def run_worker(app: FastAPI, jobs: int = 1) -> None:
    """Run ``jobs`` queued requests to the end with a real worker (preview engine) on the app's
    database and store; returns when they are finished."""
    services = services_of(app)
    settings = services.settings.model_copy(update={"x264_preset": "ultrafast"})
    worker = Worker(settings, engines={spec.id: PreviewEngine() for spec in services.models})
    worker.run(max_jobs=jobs)


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """``r`` is an error answer in the one error shape: framecast's ``error`` object and
    RunComfy's fields beside it (``detail`` on a 422 only). Its body, for more checks."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"]
    assert body["error_code"] == runcomfy_error_code(status, code)
    assert body["error_message"] == error["message"]
    assert ("detail" in body) == (status == 422), body
    return body
