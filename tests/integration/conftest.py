import pytest


@pytest.fixture
def anyio_backend() -> str:
    """The in-process API tests run on asyncio, as uvicorn serves the app."""
    return "asyncio"
