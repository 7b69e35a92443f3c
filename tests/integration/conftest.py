from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from .inprocess import client_for, make_app


@pytest.fixture
def anyio_backend() -> str:
    """The in-process API tests run on asyncio, as uvicorn serves the app."""
    return "asyncio"


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    """The API in-process with the preview engine and the test key (a module may override)."""
    return make_app(tmp_path)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` holding the test key."""
    async with client_for(app) as c:
        yield c
