"""What ``framecast serve`` sets up in its own process before it answers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from framecast.cli import serve as serve_module
from framecast.settings import Settings


@pytest.fixture
def switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_the_api_process_hands_the_gil_to_the_event_loop_sooner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, switch_interval: None
) -> None:
    # With Python's default 5 ms, threads decoding large submits kept /healthz waiting over
    # 100 ms (bench/hostile_images.py); the interval must hold while uvicorn runs.
    seen: list[float] = []
    monkeypatch.setattr(
        serve_module._Server, "run", lambda self, sockets: seen.append(sys.getswitchinterval())
    )
    sys.setswitchinterval(0.005)
    settings = Settings(
        data_dir=tmp_path, host="127.0.0.1", port=0, workers=0, webhook_dispatcher=False
    )
    serve_module.serve(settings)
    assert seen == [pytest.approx(serve_module.API_SWITCH_INTERVAL)]
    assert serve_module.API_SWITCH_INTERVAL <= 0.001
