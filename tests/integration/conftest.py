from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from .inprocess import MADE_APPS, client_for, make_app, shut_down


@pytest.fixture
def anyio_backend() -> str:
    """The in-process API tests run on asyncio, as uvicorn serves the app."""
    return "asyncio"


@pytest.fixture(autouse=True)
async def _apps_shut_down(anyio_backend: str) -> AsyncIterator[None]:
    """Every in-process app a test made is shut down after it, on the test's event loop."""
    yield
    while MADE_APPS:
        await shut_down(MADE_APPS.pop())


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    """The API in-process with the preview engine and the test key (a module may override)."""
    return make_app(tmp_path)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` holding the test key."""
    async with client_for(app) as c:
        yield c
