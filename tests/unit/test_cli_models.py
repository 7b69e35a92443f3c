"""`framecast` per model, in-process: which checkpoint `weights download` fetches for each model
(the hub faked: nothing here reaches it), `weights list`, generate's flag for the 1.5 checkpoint,
and which model a multi-GPU group is started for.
The download without a network, as a process: tests/acceptance/test_hunyuan.py."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from typer.testing import CliRunner

import framecast.worker.group as launch
from framecast.cli.main import app
from framecast.cli.model_flags import FlagError, parse_flags
from framecast.models import builtin_models
from framecast.settings import Settings, get_settings

SAMPLE = Path(__file__).parents[2] / "src/framecast/assets/sample.jpg"
I2V = "tencent/hunyuan/image-to-video"
I2V_15 = "tencent/hunyuan-video-v1.5/image-to-video"
HUB_15 = "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-"

# The settings these commands read: unset for each test, so a FRAMECAST_* of the shell that
# runs the suite cannot change what a command here does (tests/conftest.py restores them after).
_WRITTEN = (
    "ENGINE", "HUNYUAN_MODEL", "HUNYUAN15_MODEL", "OFFLOAD", "LORA_DIR", "PARALLEL", "GPUS",
    "MODELS", "DEVICE", "DATA_DIR",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in _WRITTEN:
        monkeypatch.setenv(f"FRAMECAST_{name}", "")  # records the value to restore
        monkeypatch.delenv(f"FRAMECAST_{name}")
    monkeypatch.setenv("FRAMECAST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # should a fake below not take, still no network
    yield
    get_settings.cache_clear()


def framecast(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


# -- weights -------------------------------------------------------------------------------------


def test_weights_list_shows_each_models_checkpoints_and_setting() -> None:
    code, out, _ = framecast("weights", "list")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        [I2V, "(FRAMECAST_HUNYUAN_MODEL):"],
        ["i2v", "hunyuanvideo-community/HunyuanVideo-I2V", "(default)"],
        [I2V_15, "(FRAMECAST_HUNYUAN15_MODEL):"],
        ["480p", HUB_15 + "480p_i2v", "(default)"],
        ["720p", HUB_15 + "720p_i2v"],
        ["480p_distilled", HUB_15 + "480p_i2v_distilled"],
        ["720p_distilled", HUB_15 + "720p_i2v_distilled"],
        ["480p_step_distilled", HUB_15 + "480p_i2v_step_distilled"],
        # The super-resolution stages: folders of Tencent's own repo.
        ["720p_sr", "tencent/HunyuanVideo-1.5:720p_sr_distilled"],
        ["1080p_sr", "tencent/HunyuanVideo-1.5:1080p_sr_distilled"],
    ]


def test_weights_download_of_an_sr_stage_fetches_its_two_folders_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    layout: dict[str, tuple[str, ...]] = {
        "transformer/720p_sr_distilled": _MODEL,
        "upsampler/720p_sr_distilled": _MODEL,
    }
    hub = FakeHub(tmp_path / "hub", layout)
    for parent in ("transformer", "upsampler"):  # FakeHub makes one level of folders
        (tmp_path / "hub" / "snapshot" / parent).mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    code, out, err = framecast("weights", "download", "--model", I2V_15, "--checkpoint", "720p_sr")
    assert code == 0, err
    folders = ["transformer/720p_sr_distilled/*", "upsampler/720p_sr_distilled/*"]
    assert hub.calls == [
        (("tencent/HunyuanVideo-1.5",), {"local_dir": None, "allow_patterns": folders})
    ]
    assert (
        out.splitlines()[-1] == "use it with FRAMECAST_HUNYUAN15_SR_MODEL=tencent/HunyuanVideo-1.5"
    )


# Each pipeline's published layout: the component folders and the file that makes each one
# complete (a model's folder needs a config and weights).
_MODEL = ("config.json", "model.safetensors")
_LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    I2V: {
        "transformer": _MODEL, "vae": _MODEL, "text_encoder": _MODEL, "text_encoder_2": _MODEL,
        "scheduler": ("scheduler_config.json",), "tokenizer": ("tokenizer.json",),
        "tokenizer_2": ("vocab.json",), "image_processor": ("preprocessor_config.json",),
    },
    I2V_15: {
        "transformer": _MODEL, "vae": _MODEL, "text_encoder": _MODEL, "text_encoder_2": _MODEL,
        "image_encoder": _MODEL, "scheduler": ("scheduler_config.json",),
        "guider": ("guider_config.json",), "tokenizer": ("tokenizer.json",),
        "tokenizer_2": ("tokenizer_config.json",),
        "feature_extractor": ("preprocessor_config.json",),
    },
}  # fmt: skip


class FakeHub:
    """``huggingface_hub.snapshot_download``: records what was asked and lays out the model."""

    def __init__(self, root: Path, layout: dict[str, tuple[str, ...]]) -> None:
        self.root = root
        self.layout = layout
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((args, kwargs))
        folder = Path(kwargs["local_dir"]) if kwargs.get("local_dir") else self.root / "snapshot"
        folder.mkdir(parents=True, exist_ok=True)
        index = {name: ["diffusers", "Class"] for name in self.layout}
        (folder / "model_index.json").write_text(json.dumps(index))
        for name, files in self.layout.items():
            (folder / name).mkdir(exist_ok=True)
            for file in files:
                (folder / name / file).write_text("{}")
        return str(folder)


@pytest.mark.parametrize(
    ("args", "model", "repo_id"),
    [
        ((), I2V, "hunyuanvideo-community/HunyuanVideo-I2V"),
        (("--model", I2V_15), I2V_15, HUB_15 + "480p_i2v"),
        (("--model", I2V_15, "--checkpoint", "720p"), I2V_15, HUB_15 + "720p_i2v"),
        (
            ("--model", I2V_15, "--checkpoint", "480p_step_distilled"),
            I2V_15,
            HUB_15 + "480p_i2v_step_distilled",
        ),
        (
            ("--model", I2V_15, "--checkpoint", HUB_15 + "720p_i2v_distilled"),
            I2V_15,
            HUB_15 + "720p_i2v_distilled",
        ),
        # Another hub id (a fine-tune, a mirror) is fetched as given, and checked as this model.
        (("--model", I2V_15, "--checkpoint", "me/hv15-tuned"), I2V_15, "me/hv15-tuned"),
    ],
    ids=["i2v-default", "1.5-default", "1.5-720p", "1.5-step-distilled", "1.5-hub-id", "other"],
)
@pytest.mark.parametrize("to", [False, True], ids=["cache", "to-dir"])
def test_weights_download_fetches_the_checkpoint_asked_for_and_names_its_setting(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: tuple[str, ...],
    model: str,
    repo_id: str,
    to: bool,
) -> None:
    hub = FakeHub(tmp_path / "hub", _LAYOUTS[model])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    folder = tmp_path / "weights"
    code, out, err = framecast("weights", "download", *args, *(["--to", str(folder)] if to else []))
    assert code == 0, err
    # The whole repository (no allow-patterns: each is one complete diffusers pipeline).
    assert hub.calls == [((repo_id,), {"local_dir": str(folder) if to else None})]
    setting = "FRAMECAST_HUNYUAN15_MODEL" if model == I2V_15 else "FRAMECAST_HUNYUAN_MODEL"
    path = folder if to else tmp_path / "hub" / "snapshot"
    assert out.splitlines() == [
        f"downloading {repo_id} ...",
        f"complete: {path}",
        f"use it with {setting}={path if to else repo_id}",
    ]


def test_a_download_that_lacks_a_component_of_the_model_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The I2V pipeline's layout is not a 1.5 pipeline: no guider, no image encoder.
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", FakeHub(tmp_path / "hub", _LAYOUTS[I2V])
    )
    code, _, err = framecast("weights", "download", "--model", I2V_15, "--checkpoint", "720p")
    assert code == 1
    assert err.startswith(f"error: downloaded {HUB_15}720p_i2v to ")
    assert "guider (not listed in model_index.json)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--model", I2V_15, "--checkpoint", "1080p"),
            f"error: {I2V_15} has no checkpoint '1080p'; its checkpoints: 480p, 720p, "
            "480p_distilled, 720p_distilled, 480p_step_distilled, 720p_sr, 1080p_sr "
            "(`framecast weights list`), "
            "or give a hub id (owner/name)",
        ),
        (
            ("--checkpoint", "720p"),
            f"error: 720p is a checkpoint of {I2V_15}, not of {I2V}; give --model {I2V_15}",
        ),
        (
            ("--model", I2V_15, "--checkpoint", "hunyuanvideo-community/HunyuanVideo-I2V"),
            f"error: hunyuanvideo-community/HunyuanVideo-I2V is a checkpoint of {I2V}, not of "
            f"{I2V_15}; give --model {I2V}",
        ),
        (
            ("--model", "tencent/hunyuan-video-v2/image-to-video"),
            "error: unknown model 'tencent/hunyuan-video-v2/image-to-video'; this server has "
            f"{I2V}, {I2V_15}",
        ),
    ],
    ids=["unknown-name", "other-models-name", "other-models-hub-id", "unknown-model"],
)
def test_weights_download_refuses_a_checkpoint_the_model_does_not_have_before_fetching(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    hub = FakeHub(tmp_path / "hub", {})
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    code, out, err = framecast("weights", "download", *args)
    assert code == 2
    assert err.splitlines() == [message]
    assert hub.calls == [] and out == ""


# -- generate ------------------------------------------------------------------------------------


def test_generate_takes_the_1_5_checkpoint_as_a_flag_over_the_tiny_model_setting(
    tmp_path: Path,
) -> None:
    if importlib.util.find_spec("diffusers") is None:
        pytest.skip("the hunyuan engine's packages are not installed")
    missing = tmp_path / "hv15-720p"
    code, _, err = framecast(
        "generate", SAMPLE, "--prompt", "p", "--model", I2V_15, "--engine", "hunyuan",
        # The I2V model's tiny-random selects the 1.5 tiny model too, unless 1.5's own is given.
        "--hunyuan-model", "tiny-random", "--hunyuan15-model", missing,
        # Should the flag be lost, the tiny model runs instead: briefly.
        "--num-frames", "5", "--num-inference-steps", "1", "-o", tmp_path / "out.mp4",
    )  # fmt: skip
    assert code == 2
    assert f"FRAMECAST_HUNYUAN15_MODEL={missing} is not a complete" in err


@pytest.fixture
def no_group(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Starting a group fails the test; the models it is asked to run are recorded first."""
    asked: list[str | None] = []

    def group_engine(
        settings: Any, processes: int | None = None, model_id: str | None = None
    ) -> Any:
        asked.append(model_id or launch.group_model(settings))
        raise launch.GroupError("the group would start here")

    monkeypatch.setattr(launch, "group_engine", group_engine)
    return asked


@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--parallel", "2"], {}), ([], {"FRAMECAST_GPUS": "0,1"})],
    ids=["--parallel", "FRAMECAST_GPUS"],
)
def test_generate_starts_a_group_for_the_model_asked_for(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    no_group: list[str | None],
    flags: list[str],
    env: dict[str, str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out.mp4"
    base = ["generate", str(SAMPLE), "--prompt", "p", "--engine", "hunyuan", "-o", str(out), *flags]
    for model in (I2V_15, I2V):
        code, _, err = framecast(*base, "--model", model)
        assert code == 2 and err.splitlines() == ["error: the group would start here"]
    assert no_group == [I2V_15, I2V]


def test_a_multi_gpu_worker_serves_the_one_model_it_is_given(
    monkeypatch: pytest.MonkeyPatch, no_group: list[str | None]
) -> None:
    monkeypatch.setenv("FRAMECAST_MODELS", f"{I2V},{I2V_15}")
    code, _, err = framecast("worker", "--parallel", "2", "--engine", "hunyuan")
    assert code == 2
    assert err.splitlines() == [
        "error: FRAMECAST_MODELS names 2 models; a multi-GPU worker serves one (each GPU holds "
        "the whole model): name one, and serve the others from another worker"
    ]
    assert no_group == []
    for models, served in ((I2V_15, I2V_15), (I2V, I2V), ("", I2V)):
        monkeypatch.setenv("FRAMECAST_MODELS", models)
        code, _, err = framecast("worker", "--parallel", "2", "--engine", "hunyuan")
        assert code == 2 and err.splitlines() == ["error: the group would start here"]
        assert no_group[-1] == served


# -- framecast models ----------------------------------------------------------------------------


def _listed_flags(out: str, model_id: str) -> list[str]:
    block = out.split(f"{model_id}: ")[1].split("\n")[1:]
    flags = []
    for line in block:
        if not line.startswith("  "):
            break
        flags.append(line.split()[0])
    return flags


def test_models_lists_the_arguments_and_flags_generate_takes() -> None:
    code, out, _ = framecast("models")
    assert code == 0
    assert "PydanticUndefined" not in out
    for spec in builtin_models():
        flags = _listed_flags(out, spec.id)
        # The image is generate's argument, LoRAs are --lora NAME:SCALE: not fields as flags.
        assert flags[:2] == ["IMAGE", "--prompt"], flags
        assert f"--{spec.input.image_field.replace('_', '-')}" not in flags
        assert "--loras" not in flags
        assert ("--lora" in flags) == ("loras" in spec.input.model_fields)
        # Every other flag listed is one generate parses (it refuses any other).
        for flag in flags[2:]:
            if flag != "--lora":
                value = [] if "--no-" + flag[2:] in out else ["9"]
                assert parse_flags(spec.input, [flag, *value])
        with pytest.raises(FlagError):
            parse_flags(spec.input, ["--not-an-input", "1"])
        # Each input's description whole: "e.g." does not end it.
        for name, info in spec.input.model_fields.items():
            if info.description and name not in {spec.input.image_field}:
                assert " ".join(info.description.split()) in out, name


def test_the_models_are_those_of_the_settings_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from framecast.api.app import create_app
    from framecast.models import all_models

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "plugins"))
    acme = "acme/pan/image-to-video"
    assert acme not in [m.id for m in all_models(Settings())]
    settings = Settings(data_dir=tmp_path, model_plugins=["acme_model"])
    assert acme in [m.id for m in all_models(settings)]
    # Nothing read from the environment or a process-wide list: the app serves what it is given.
    app = create_app(settings)
    with TestClient(app):
        assert f"/v1/models/{acme}" in app.openapi()["paths"]
    code, out, _ = framecast("models")
    assert code == 0 and acme not in out  # that app's settings did not leak into the process
