"""Which weights the engine would load, and what it says when they are not all there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framecast.engines.hunyuan.weights import (
    COMPONENTS,
    WeightsError,
    missing_files,
    resolve_model,
)
from framecast.engines.hunyuan15 import weights as weights_15

_CLASSES = {
    "transformer": ["diffusers", "HunyuanVideoTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLHunyuanVideo"],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "LlavaForConditionalGeneration"],
    "text_encoder_2": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "LlamaTokenizerFast"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "image_processor": ["transformers", "CLIPImageProcessor"],
}


def fake_model(root: Path) -> Path:
    """The file layout of hunyuanvideo-community/HunyuanVideo-I2V, with empty files."""
    root.mkdir()
    (root / "model_index.json").write_text(
        json.dumps({"_class_name": "HunyuanVideoImageToVideoPipeline", **_CLASSES})
    )
    for name in ("vae", "text_encoder_2"):
        (root / name).mkdir()
        (root / name / "config.json").write_text("{}")
        (root / name / "model.safetensors").write_bytes(b"")
    for name, shards in (("transformer", 3), ("text_encoder", 2)):
        (root / name).mkdir()
        (root / name / "config.json").write_text("{}")
        files = [f"model-0000{i}-of-0000{shards}.safetensors" for i in range(1, shards + 1)]
        for f in files:
            (root / name / f).write_bytes(b"")
        index = {"weight_map": {f"layer{i}": f for i, f in enumerate(files)}}
        (root / name / "model.safetensors.index.json").write_text(json.dumps(index))
    for name, config in (
        ("scheduler", "scheduler_config.json"),
        ("tokenizer", "tokenizer.json"),
        ("tokenizer_2", "vocab.json"),
        ("image_processor", "preprocessor_config.json"),
    ):
        (root / name).mkdir()
        (root / name / config).write_text("{}")
    return root


def test_a_complete_directory_is_used_as_it_is(tmp_path: Path) -> None:
    model = fake_model(tmp_path / "hv")
    assert missing_files(model) == []
    source = resolve_model(str(model))
    assert (source.kind, source.path, source.is_tiny) == ("directory", model.resolve(), False)


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    model = fake_model(tmp_path / "hv")
    (model / "transformer" / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(WeightsError) as caught:
        resolve_model(str(model))
    assert "transformer/model-00002-of-00003.safetensors" in caught.value.message
    assert "framecast weights download --to DIR" in caught.value.message


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_missing_component_is_named(tmp_path: Path, component: str) -> None:
    model = fake_model(tmp_path / "hv")
    for f in sorted((model / component).iterdir(), reverse=True):
        f.unlink()
    (model / component).rmdir()
    assert missing_files(model) == [f"{component}/"]


def test_a_model_folder_without_weights_is_incomplete(tmp_path: Path) -> None:
    model = fake_model(tmp_path / "hv")
    (model / "vae" / "model.safetensors").unlink()
    assert missing_files(model) == ["vae/weights (*.safetensors)"]


def test_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"the directory .* itself"):
        resolve_model(str(tmp_path / "nowhere"))


def test_neither_a_directory_nor_a_hub_id() -> None:
    with pytest.raises(WeightsError, match="neither an existing directory, a hub id"):
        resolve_model("HunyuanVideo-I2V")


def test_a_hub_id_that_is_not_cached_points_to_the_download_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="run `framecast weights download` first"):
        resolve_model("hunyuanvideo-community/HunyuanVideo-I2V")


def test_tiny_random_needs_no_files() -> None:
    assert resolve_model("tiny-random").is_tiny


def test_hunyuan_1_5s_messages_point_to_its_own_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plain `framecast weights download` would fetch the I2V model instead.
    command = "framecast weights download --model tencent/hunyuan-video-v1.5/image-to-video"
    with pytest.raises(WeightsError) as caught:
        weights_15.resolve_model(str(fake_model(tmp_path / "hv")))  # I2V's layout: no guider
    assert "FRAMECAST_HUNYUAN15_MODEL=" in caught.value.message
    assert f"`{command} --to DIR`" in caught.value.message
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match=f"run `{command}` first"):
        weights_15.resolve_model("hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v")
