from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from framecast.engines.base import EngineUnavailable
from framecast.engines.selection import load_engine, plan_engines
from framecast.models import builtin_models
from framecast.settings import Settings

I2V = "tencent/hunyuan/image-to-video"
I2V_15 = "tencent/hunyuan-video-v1.5/image-to-video"


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever this machine has cached must not decide these tests.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def test_hunyuan_with_weights_not_downloaded_says_how_to_get_them() -> None:
    with pytest.raises(EngineUnavailable, match="run `framecast weights download` first"):
        load_engine(Settings(engine="hunyuan"), I2V)


def test_hunyuan_with_an_incomplete_directory_names_what_is_missing(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "X"]}))
    with pytest.raises(EngineUnavailable) as caught:
        load_engine(Settings(engine="hunyuan", hunyuan_model=str(model)), I2V)
    assert "transformer (not listed in model_index.json)" in caught.value.message
    assert "vae/" in caught.value.message


def test_auto_falls_back_to_preview_for_every_model_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="framecast.engines"):
        plan = plan_engines(Settings(engine="auto"))
    assert plan == dict.fromkeys((spec.id for spec in builtin_models()), "preview")
    assert "using the CPU preview engine" in caplog.text
    assert "framecast weights download" in caplog.text


def test_tiny_random_selects_the_tiny_model_of_every_hunyuan_model() -> None:
    pytest.importorskip("diffusers")
    plan = plan_engines(Settings(engine="auto", hunyuan_model="tiny-random"))
    assert plan == {I2V: "real", I2V_15: "real"}
    engine = load_engine(Settings(engine="auto", hunyuan_model="tiny-random"), I2V)
    assert engine.name == "hunyuan"
    assert engine.metadata()["tiny_random"] is True


def test_models_setting_narrows_what_a_worker_serves() -> None:
    plan = plan_engines(Settings(engine="preview", models=I2V_15))
    assert plan == {I2V_15: "preview"}
    with pytest.raises(EngineUnavailable, match="FRAMECAST_MODELS: unknown model 'acme/x'"):
        plan_engines(Settings(engine="preview", models="acme/x"))


def test_hunyuan_with_one_model_missing_serves_the_other_unless_both_are_named(
    tmp_path: Path,
) -> None:
    pytest.importorskip("diffusers")
    # The 1.5 weights are not here: its own setting points at nothing.
    settings = Settings(engine="hunyuan", hunyuan_model="tiny-random")
    missing = str(tmp_path / "nothing")
    plan = plan_engines(settings.model_copy(update={"hunyuan15_model": missing}))
    assert plan == {I2V: "real"}
    named = settings.model_copy(update={"hunyuan15_model": missing, "models": [I2V, I2V_15]})
    with pytest.raises(EngineUnavailable, match=I2V_15):
        plan_engines(named)


def test_preview_engine_gets_its_step_delay_from_settings() -> None:
    engine = load_engine(Settings(engine="preview", preview_step_seconds=0.25), I2V_15)
    assert engine.name == "preview" and engine.metadata()["engine"] == "preview"
    assert getattr(engine, "step_seconds", None) == 0.25


def test_fp8_linears_serve_both_models(caplog: pytest.LogCaptureFixture) -> None:
    # The FP8 linears are shared code (engines/hunyuan/fp8.py): a worker with them serves
    # every model, and loads 1.5 with them when told to serve it.
    pytest.importorskip("diffusers")

    def fp8(models: str = "") -> Settings:
        return Settings(
            engine="hunyuan", hunyuan_model="tiny-random", linear="fp8-weight", models=models
        )

    with caplog.at_level(logging.WARNING, logger="framecast.engines"):
        assert plan_engines(fp8()) == {I2V: "real", I2V_15: "real"}
    assert "not serving" not in caplog.text
    assert plan_engines(fp8(models=I2V_15)) == {I2V_15: "real"}
    engine = load_engine(fp8(models=I2V_15), I2V_15)
    assert engine.metadata()["linear"].startswith("fp8-weight")
    assert engine.metadata()["path"] == "fast"
