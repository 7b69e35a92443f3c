"""The full-size HunyuanVideo 1.5 image-to-video architecture (engines/hunyuan15/fullsize.py),
built on the meta device: no memory, a few seconds. Its parameter counts against the published
figures, its precisions, and its transformer config against what the engine accepts."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

pytest.importorskip("diffusers")

import torch
from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import (
    AutoencoderKLHunyuanVideo15,
)
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15Transformer3DModel,
)
from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
    HunyuanVideo15ImageToVideoPipeline,
    format_text_input,
)

from framecast.engines.hunyuan15.engine import RESOLUTION_OF_TARGET_SIZE, check_checkpoint
from framecast.engines.hunyuan15.fullsize import (
    BYT5_VOCAB,
    QWEN_VOCAB,
    TRANSFORMER_CONFIGS,
    VAE_CONFIG,
    _building,
    build_full_size_pipeline,
    build_full_size_transformer,
)
from framecast.engines.hunyuan15.pipeline import FramecastHunyuan15Pipeline
from framecast.engines.hunyuan15.weights import WeightsError


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config without its private keys, tuples as the lists a JSON config loads."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in config.items()
        if not k.startswith("_")
    }


@pytest.fixture(scope="module", params=["480p", "720p"])
def pipe(request: pytest.FixtureRequest) -> Iterator[FramecastHunyuan15Pipeline]:
    yield build_full_size_pipeline("meta", request.param)


def test_parameter_counts_are_the_published_ones(pipe: FramecastHunyuan15Pipeline) -> None:
    # "an 8.3B-parameter Diffusion Transformer" (the official README).
    assert count(pipe.transformer) == 8_326_608_160
    assert round(count(pipe.transformer) / 1e9, 1) == 8.3
    # Qwen2.5-7B's 7.61B less its untied output head (152064 x 3584): the text model the
    # pipeline takes has no head.
    assert count(pipe.text_encoder) == 7_070_619_136
    assert round((count(pipe.text_encoder) + QWEN_VOCAB * 3584) / 1e9, 2) == 7.62
    # ByT5-small's encoder (its 300M count the decoder too), Glyph-SDXL-v2's 1510 ids.
    assert count(pipe.text_encoder_2) == 219_314_944
    # SigLIP so400m's vision tower with its pooling head.
    assert count(pipe.image_encoder) == 428_225_600
    assert count(pipe.vae) == 1_260_634_115
    assert count(pipe.vae.decoder) == 871_309_571


def test_official_precisions_on_the_device(pipe: FramecastHunyuan15Pipeline) -> None:
    expected = {
        "transformer": torch.bfloat16,
        "vae": torch.float16,
        "text_encoder": torch.float16,
        "image_encoder": torch.float16,
        "text_encoder_2": torch.float32,
    }
    for name, dtype in expected.items():
        module: torch.nn.Module = getattr(pipe, name)
        assert {p.dtype for p in module.parameters()} == {dtype}, name
        assert {p.device.type for p in module.parameters()} == {"meta"}, name
        assert not module.training, name
    assert torch.get_default_dtype() == torch.float32  # left as it was


def test_transformer_is_the_checkpoints_and_the_engine_accepts_it(
    pipe: FramecastHunyuan15Pipeline,
) -> None:
    config = dict(pipe.transformer.config)
    resolution = RESOLUTION_OF_TARGET_SIZE[config["target_size"]]
    assert config["target_size"] == {"480p": 640, "720p": 960}[resolution]
    check_checkpoint(config, "full-size")  # raises if not an image-to-video transformer
    assert config["in_channels"] == 2 * config["out_channels"] + 1
    # The conversion script's source: the class defaults, but for target_size and task_type.
    with torch.device("meta"):  # 8.3B parameters: never for real here
        defaults = HunyuanVideo15Transformer3DModel.from_config(
            {"target_size": config["target_size"], "task_type": "i2v"}
        )
    assert plain(config) == plain(defaults.config) == plain(TRANSFORMER_CONFIGS[resolution])


def test_a_text_to_video_config_is_refused() -> None:
    config = {**TRANSFORMER_CONFIGS["720p"], "task_type": "t2v"}
    with pytest.raises(WeightsError, match=r"not a HunyuanVideo 1\.5 image-to-video"):
        check_checkpoint(config, "t2v")


def test_vae_is_the_default_one(pipe: FramecastHunyuan15Pipeline) -> None:
    with torch.device("meta"):
        stock = AutoencoderKLHunyuanVideo15.from_config({})
    assert plain(pipe.vae.config) == plain(stock.config) == plain(VAE_CONFIG)


def test_text_and_image_encoders(pipe: FramecastHunyuan15Pipeline) -> None:
    qwen = pipe.text_encoder.config
    assert (qwen.hidden_size, qwen.intermediate_size, qwen.num_hidden_layers) == (3584, 18944, 28)
    assert (qwen.num_attention_heads, qwen.num_key_value_heads) == (28, 4)
    assert qwen.rope_parameters["mrope_section"] == [16, 24, 24]
    assert pipe.transformer.config.text_embed_dim == qwen.hidden_size
    byt5 = pipe.text_encoder_2.config
    assert (byt5.d_model, byt5.d_ff, byt5.num_layers, byt5.num_heads) == (1472, 3584, 12, 6)
    assert pipe.transformer.config.text_embed_2_dim == byt5.d_model
    siglip = pipe.image_encoder.config
    assert (siglip.hidden_size, siglip.num_hidden_layers) == (1152, 27)
    assert (siglip.image_size // siglip.patch_size) ** 2 == pipe.vision_num_semantic_tokens == 729
    assert pipe.transformer.config.image_embed_dim == siglip.hidden_size


def test_scheduler_and_guider_are_the_checkpoints(pipe: FramecastHunyuan15Pipeline) -> None:
    resolution = RESOLUTION_OF_TARGET_SIZE[pipe.transformer.config.target_size]
    assert pipe.scheduler.config.shift == {"480p": 5.0, "720p": 7.0}[resolution]
    assert pipe.guider.guidance_scale == 6.0


def test_tokenizers_give_the_real_sequence_lengths(pipe: FramecastHunyuan15Pipeline) -> None:
    # The text encoder sees the system turn (108 tokens, cropped after) and a prompt padded to
    # 1000, as with Qwen2.5-VL's own tokenizer.
    system = (
        inspect.signature(HunyuanVideo15ImageToVideoPipeline._get_mllm_prompt_embeds)
        .parameters["system_message"]
        .default
    )
    start = pipe.prompt_template_encode_start_idx
    inputs = pipe.tokenizer.apply_chat_template(
        format_text_input(["the video"], system),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        padding="max_length",
        max_length=pipe.tokenizer_max_length + start,
        truncation=True,
        return_tensors="pt",
    )
    ids = inputs["input_ids"][0]
    assert ids.shape == (1108,) and int(ids.max()) < QWEN_VOCAB
    system_turn = pipe.tokenizer.decode(ids[:start])
    assert system_turn.startswith("<|im_start|>system\n")
    assert system_turn.endswith("<|im_end|>\n<|im_start|>user\n")
    # Two template words: one token each, as in Qwen2's BPE.
    assert len(pipe.tokenizer.tokenize(" the video")) == 2
    assert len(pipe.tokenizer_2) <= BYT5_VOCAB
    assert len(pipe.tokenizer_2("a sign").input_ids) == len(b"a sign") + 1  # bytes and </s>


def test_the_transformer_alone_is_the_pipelines() -> None:
    alone = build_full_size_transformer("meta", "720p")
    assert isinstance(alone, HunyuanVideo15Transformer3DModel)
    assert count(alone) == 8_326_608_160 and alone.dtype == torch.bfloat16
    assert alone.config.target_size == 960 and not alone.training
    with pytest.raises(ValueError, match="480p, 720p"):
        build_full_size_transformer("meta", "1080p")


def test_weights_are_drawn_from_the_seed_and_leave_the_callers_rng() -> None:
    def draw(seed: int) -> torch.Tensor:
        with _building("cpu", torch.float16, seed):
            return torch.nn.Linear(4, 4).weight.detach()

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))
    assert draw(1).dtype == torch.float16
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.get_default_dtype() == torch.float32
