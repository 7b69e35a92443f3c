from __future__ import annotations

import logging

import pytest

from framecast.engines import EngineUnavailable, load_engine
from framecast.settings import Settings


def test_hunyuan_asked_for_but_unavailable_is_a_clear_error() -> None:
    with pytest.raises(EngineUnavailable, match="FRAMECAST_ENGINE=hunyuan but"):
        load_engine(Settings(engine="hunyuan"))


def test_auto_falls_back_to_preview_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="framecast.engines"):
        engine = load_engine(Settings(engine="auto"))
    assert engine.name == "preview"
    assert "using the CPU preview engine" in caplog.text


def test_preview_engine_gets_its_step_delay_from_settings() -> None:
    engine = load_engine(Settings(engine="preview", preview_step_seconds=0.25))
    assert engine.name == "preview" and engine.metadata()["engine"] == "preview"
    assert getattr(engine, "step_seconds", None) == 0.25
