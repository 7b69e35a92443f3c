"""The published HunyuanVideo-I2V architecture at full size, with random weights, for speed.

Speed does not depend on the weight values, so the GPU benchmark times this instead of the
~40 GB checkpoint. The models are built straight on the target device in their final
precision (under ``torch.device(...)`` and a default dtype): building 13B parameters on the
CPU first would take minutes and twice the memory. (Constructing on the meta device and then
``to_empty`` would leave the non-persistent buffers, rotary frequencies and position ids,
uninitialised; building on the device computes them as the constructors do.)

Tokenizers are the tiny model's (:mod:`.tiny`): they split text as Llama-3 and CLIP do, so
sequence lengths, the only thing about them that costs time, are the real ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import AutoencoderKLHunyuanVideo
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoTransformer3DModel,
)
from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaForConditionalGeneration,
)

from framecast.engines.hunyuan.pipeline import FramecastHunyuanPipeline
from framecast.engines.hunyuan.tiny import (
    CLIP_EOS,
    PAD,
    _clip_tokenizer,
    _llama_tokenizer,
    _token_id,
    llava_config_for,
    llava_image_processor,
)
from framecast.models.hunyuan_i2v import FLOW_SHIFT_STABLE

LLAVA_VOCAB = 128_320
CLIP_VOCAB = 49_408


@contextlib.contextmanager
def _building(device: torch.device | str, dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def configs() -> dict[str, Any]:
    """The full-size configurations (xtuner/llava-llama-3-8b-v1_1, CLIP-L, 884-16c VAE, T/2)."""
    tokenizer = _llama_tokenizer()
    tokenizer_2 = _clip_tokenizer()
    llama = LlamaConfig(
        vocab_size=LLAVA_VOCAB,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        rms_norm_eps=1e-5,
        pad_token_id=_token_id(tokenizer, PAD),
    )
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
    )
    llava = llava_config_for(llama, vision, tokenizer)
    clip = CLIPTextConfig(
        vocab_size=CLIP_VOCAB,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        projection_dim=768,
        eos_token_id=_token_id(tokenizer_2, CLIP_EOS),
        pad_token_id=_token_id(tokenizer_2, CLIP_EOS),
    )
    return {"llava": llava, "clip": clip, "tokenizer": tokenizer, "tokenizer_2": tokenizer_2}


def build_full_size_pipeline(
    device: torch.device | str,
    transformer_dtype: torch.dtype = torch.bfloat16,
    dtype: torch.dtype = torch.float16,
) -> FramecastHunyuanPipeline:
    """Every component at full size with random weights, built on ``device``.

    ``device="meta"`` builds nothing real: useful to count parameters anywhere.
    """
    c = configs()
    with _building(device, transformer_dtype):
        # diffusers' defaults are the published transformer; I2V adds token_replace.
        transformer = HunyuanVideoTransformer3DModel(image_condition_type="token_replace")
    with _building(device, dtype):
        vae = AutoencoderKLHunyuanVideo()  # the defaults are the 884-16c VAE
        text_encoder = LlavaForConditionalGeneration(c["llava"])
        text_encoder_2 = CLIPTextModel(c["clip"])
    for model in (transformer, vae, text_encoder, text_encoder_2):
        model.eval()
    image_processor = llava_image_processor()
    return FramecastHunyuanPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT_STABLE),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=c["tokenizer"],
        tokenizer_2=c["tokenizer_2"],
        image_processor=image_processor,
    )
