from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from framecast.engines import load_engine
from framecast.engines.hunyuan.weights import WeightsError
from framecast.settings import Settings


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever this machine has cached must not decide these tests.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def test_hunyuan_with_weights_not_downloaded_says_how_to_get_them() -> None:
    with pytest.raises(WeightsError, match="run `framecast weights download` first"):
        load_engine(Settings(engine="hunyuan"))


def test_hunyuan_with_an_incomplete_directory_names_what_is_missing(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "X"]}))
    with pytest.raises(WeightsError) as caught:
        load_engine(Settings(engine="hunyuan", hunyuan_model=str(model)))
    assert "transformer (not listed in model_index.json)" in caught.value.message
    assert "vae/" in caught.value.message


def test_auto_falls_back_to_preview_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="framecast.engines"):
        engine = load_engine(Settings(engine="auto"))
    assert engine.name == "preview"
    assert "using the CPU preview engine" in caplog.text
    assert "framecast weights download" in caplog.text


def test_auto_takes_the_tiny_model_when_named(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("diffusers")
    engine = load_engine(Settings(engine="auto", hunyuan_model="tiny-random"))
    assert engine.name == "hunyuan"
    assert engine.metadata()["tiny_random"] is True


def test_preview_engine_gets_its_step_delay_from_settings() -> None:
    engine = load_engine(Settings(engine="preview", preview_step_seconds=0.25))
    assert engine.name == "preview" and engine.metadata()["engine"] == "preview"
    assert getattr(engine, "step_seconds", None) == 0.25
