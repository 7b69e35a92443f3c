"""The API in-process, over httpx's ASGI transport: no server process, the real app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from framecast.api.app import create_app
from framecast.settings import Settings

KEY = "in-process-test-key"
SUBMIT = "/v1/models/tencent/hunyuan/image-to-video"


def make_app(tmp_path: Path, **settings: Any) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path / "data", api_keys=[KEY], **settings))


def client_for(app: FastAPI, key: str | None = KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        # raise_app_exceptions=False: an unhandled error is the API's 500, as a client sees it.
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {key}"} if key else {},
        timeout=30,
    )
