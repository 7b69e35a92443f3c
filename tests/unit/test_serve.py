"""What ``framecast serve`` sets up in its own process before it answers."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from framecast.cli import serve as serve_module
from framecast.cli.common import settings_from_flags
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


def test_workers_start_with_the_settings_serve_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Flags and settings built in code reach serve's workers only through their environment:
    # what a worker reads back there must be what serve has, field for field.
    monkeypatch.setenv("FRAMECAST_SECRET_KEY", "from-the-shell")  # unset below: must go
    given = Settings(
        data_dir=tmp_path / "data",
        engine="preview",
        port=9123,
        api_keys=["a", "b"],
        gpus=[0, 2],
        models=["tencent/hunyuan/image-to-video"],
        retention=dt.timedelta(days=7),
        memory_check=False,
        preview_step_seconds=0.25,
        secret_key=None,
        lora_dir=tmp_path / "loras",
    )
    env = serve_module.child_environment(given, {"PATH": "/bin", "FRAMECAST_PORT": "1"})
    assert env["PATH"] == "/bin" and "FRAMECAST_SECRET_KEY" not in env
    for name in [n for n in os.environ if n.startswith("FRAMECAST_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().model_dump() == given.model_dump()


def test_flags_become_settings_without_writing_the_environment(tmp_path: Path) -> None:
    before = dict(os.environ)
    settings = settings_from_flags(engine="preview", data_dir=tmp_path, port=None)
    assert (settings.engine, settings.data_dir) == ("preview", tmp_path)
    assert dict(os.environ) == before
