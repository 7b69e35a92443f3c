from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from framecast.engines.base import EngineNeedsSetup, EngineUnavailable
from framecast.engines.hunyuan import loader
from framecast.engines.selection import load_engine, plan_engines
from framecast.models import builtin_models
from framecast.settings import Settings
from framecast.worker.engine_loading import EngineLoadFailed, load_with_retries

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


def _without_the_model_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on an install without the hunyuan extra (`pip install framecast`, the CPU image).
    monkeypatch.setattr(loader, "missing_packages", lambda: ["torch", "diffusers"])


def test_hunyuan_without_its_packages_says_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_the_model_packages(monkeypatch)
    with pytest.raises(EngineNeedsSetup) as caught:
        plan_engines(Settings(engine="hunyuan"))
    message = caught.value.message
    assert "make gpu" in message and "pip install 'framecast[hunyuan]'" in message
    assert "weights download" not in message  # weights are not what is missing
    # One reason for both models, said once, naming both.
    assert message.count("torch, diffusers not installed") == 1
    assert I2V in message and I2V_15 in message
    with pytest.raises(EngineNeedsSetup, match="make gpu"):
        load_engine(Settings(engine="hunyuan"), I2V_15)  # `framecast generate`'s path


def _load(settings: Settings) -> tuple[str, list[str]]:
    """A worker's engine load: the reason it gave up, and the failed tries it reported."""
    reports: list[str] = []
    with pytest.raises(EngineLoadFailed) as caught:
        load_with_retries(settings, None, stop=threading.Event(), report=reports.append)
    return caught.value.message, reports


def test_a_worker_without_the_packages_gives_up_at_once_but_retries_missing_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(engine="hunyuan", engine_load_attempts=3, engine_load_backoff_seconds=0)
    _without_the_model_packages(monkeypatch)
    message, reports = _load(settings)
    assert reports == []  # no retry: none can install a package
    assert "make gpu" in message and "tries" not in message
    assert "weights download" not in message and "FRAMECAST_ENGINE=auto" in message
    # Weights may be on a disk still mounting: those are tried again, and the hint is theirs.
    monkeypatch.setattr(loader, "missing_packages", list)  # all installed
    message, reports = _load(settings)
    assert len(reports) == 2 and "after 3 tries" in message
    assert "framecast weights download" in message and "make gpu" not in message
