"""The published HunyuanVideo 1.5 image-to-video architecture at full size, with random weights.

Speed does not depend on the weight values, so a GPU benchmark can time this instead of
downloading the checkpoints (the transformer alone is 16.7 GB), and ``device="meta"`` builds
it without any memory, to count parameters (:mod:`.memory` is computed from those counts).
As :mod:`framecast.engines.hunyuan.fullsize` does for HunyuanVideo-I2V, every model is built
straight on the target device in its final precision (under ``torch.device(...)`` and a
default dtype), and from ``seed``.

The precisions are the official ones, as :meth:`.engine.Placement.choose` loads them: the
transformer in bf16; the VAE, Qwen2.5-VL and SigLIP in fp16; ByT5 in fp32.

Where each configuration comes from (read, not copied; every one a published ``config.json``
or the constructor defaults diffusers' own conversion builds it with):

- Transformer (:data:`TRANSFORMER_CONFIGS`): diffusers' ``scripts/
  convert_hunyuan_video1_5_to_diffusers.py`` builds ``HunyuanVideo15Transformer3DModel
  (**TRANSFORMER_CONFIGS[type])``, where each entry sets only ``target_size`` (640 for the
  480p checkpoints, 960 for the 720p ones), ``task_type`` and, for the step-distilled one,
  ``use_meanflow``; everything else is the class's defaults. Those defaults are the official
  ``transformer/<version>/config.json`` of ``tencent/HunyuanVideo-1.5`` in diffusers' terms:
  hidden 2048 = 16 heads x 128, 54 dual-stream blocks and no single-stream ones, MLP ratio 4,
  patch 1x1x1, 32 latent channels in and out (diffusers' 65 inputs: the noisy latent, the
  image latent and a mask channel), text 3584 (Qwen2.5-VL), glyph 1472 (ByT5-small), image
  1152 (SigLIP), RoPE (16, 56, 56) with theta 256, two token-refiner layers. The full config
  is spelled out here, so that a change of diffusers' defaults shows up in the tests; the
  converted hub configs (``hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-*``,
  ``transformer/config.json``) carry the same values.
- VAE (:data:`VAE_CONFIG`): the conversion builds ``AutoencoderKLHunyuanVideo15()`` with its
  defaults, which the hub's ``vae/config.json`` repeats: channels (128, 256, 512, 1024, 1024),
  32 latent channels, two ResNet blocks per level (three in the decoder), 16x spatial and 4x
  temporal compression, scaling factor 1.03682.
- Text encoder (:func:`qwen_config`): the language model of ``Qwen/Qwen2.5-VL-7B-Instruct``
  (the conversion saves ``AutoModel.from_pretrained(...).language_model``, a
  ``Qwen2_5_VLTextModel``): vocabulary 152064, hidden 3584, MLP 18944, 28 layers, 28 heads
  with 4 key-value heads, RMS epsilon 1e-6, RoPE theta 1e6 with the multimodal sections
  (16, 24, 24). transformers' own defaults for this class are the 72B model's, so every
  value is given.
- Glyph encoder (:func:`byt5_config`): the encoder of ``google/byt5-small`` (d_model 1472,
  d_ff 3584, d_kv 64, 6 heads, 12 layers, gated GELU, 32 relative-position buckets up to
  128), loaded with the Glyph-SDXL-v2 weights after its embedding is resized for Glyph-SDXL-v2's
  colour and font tokens: a vocabulary of 1510 (the converted ``text_encoder_2/config.json``).
- Image encoder (:func:`siglip_config`): ``black-forest-labs/FLUX.1-Redux-dev``
  ``image_encoder``, the vision tower of SigLIP so400m-patch14-384 (hidden 1152, MLP 4304,
  27 layers, 16 heads, 384 px in 14-px patches: the 729 tokens the pipeline expects). Its
  config names no ``vision_use_head``, so the attention-pooling head is built as transformers'
  default has it (15.2M parameters; the pipeline reads ``last_hidden_state`` and never runs it).
- Scheduler and guider: the checkpoint's official flow shift and guidance
  (:data:`framecast.models.hunyuan15_i2v.CHECKPOINTS`, the base model of the resolution).

Tokenizers are the tiny model's (:mod:`.tiny`); checked against the real ones:

- ByT5: the real byte-level ``ByT5Tokenizer`` (byt5-small's 384 ids), less the colour and font
  tokens Glyph-SDXL-v2 adds (ids 384 to 1509: ``<color-0>`` would split into bytes; nothing
  in the pipeline writes them). Same lengths for any quoted text, padded to 256 as the real
  one.
- Qwen: splits where Qwen2's pre-tokenizer regex does and has the chat template, so the 108
  tokens the pipeline crops (``prompt_template_encode_start_idx``: the system turn and the user
  turn's header) are the real ones, and the prompt is padded to 1000 tokens past it: the text
  encoder sees the real sequence length, 1108. But only the template's own words are single
  tokens; any other word is spelled out letter by letter (``" young"`` is 6 tokens, 1 in Qwen2's
  BPE), about 4x the real count. So with the padding cut (the exact path) the transformer gets
  more text tokens than the real model would (some hundreds, under 1% of the 51,000 to 222,000
  tokens of a 480p or 720p video), and a prompt of more than about 250 words is cut where the
  real one is not. A timing prompt made of the template's words ("the", "video", "camera",
  "objects", ...) tokenizes to one token a word in both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import torch

from framecast.models.hunyuan15_i2v import BUCKET_BASE, CHECKPOINTS, Checkpoint

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import (
        AutoencoderKLHunyuanVideo15,
    )
    from diffusers.models.transformers.transformer_hunyuan_video15 import (
        HunyuanVideo15Transformer3DModel,
    )
    from transformers import Qwen2_5_VLTextConfig, SiglipVisionConfig, T5Config

    from framecast.engines.hunyuan15.pipeline import FramecastHunyuan15Pipeline

RESOLUTIONS: Final = ("480p", "720p")

_TRANSFORMER_COMMON: Final[dict[str, Any]] = {
    "in_channels": 65,
    "out_channels": 32,
    "num_attention_heads": 16,
    "attention_head_dim": 128,
    "num_layers": 54,
    "num_refiner_layers": 2,
    "mlp_ratio": 4.0,
    "patch_size": 1,
    "patch_size_t": 1,
    "qk_norm": "rms_norm",
    "text_embed_dim": 3584,
    "text_embed_2_dim": 1472,
    "image_embed_dim": 1152,
    "rope_theta": 256.0,
    "rope_axes_dim": [16, 56, 56],  # lists, as the hub's JSON configs load
    "task_type": "i2v",
    "use_meanflow": False,
}

TRANSFORMER_CONFIGS: Final[dict[str, dict[str, Any]]] = {
    resolution: {**_TRANSFORMER_COMMON, "target_size": base}
    for resolution, base in BUCKET_BASE.items()
}
"""``HunyuanVideo15Transformer3DModel`` arguments of the 480p_i2v and 720p_i2v checkpoints (the
CFG-distilled ones are the same architecture; the 480p step-distilled one adds a second
timestep embedder, ``use_meanflow``, 4.7M parameters)."""

VAE_CONFIG: Final[dict[str, Any]] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 32,
    "block_out_channels": [128, 256, 512, 1024, 1024],
    "layers_per_block": 2,
    "spatial_compression_ratio": 16,
    "temporal_compression_ratio": 4,
    "downsample_match_channel": True,
    "upsample_match_channel": True,
    "scaling_factor": 1.03682,
}
"""``AutoencoderKLHunyuanVideo15`` arguments (hub ``vae/config.json``)."""

QWEN_VOCAB: Final = 152_064
BYT5_VOCAB: Final = 1510
"""byt5-small's 384 ids, resized to the tokenizer with Glyph-SDXL-v2's colour and font tokens."""


def qwen_config() -> Qwen2_5_VLTextConfig:
    """The text model of Qwen2.5-VL-7B-Instruct."""
    from transformers import Qwen2_5_VLTextConfig

    return Qwen2_5_VLTextConfig(
        vocab_size=QWEN_VOCAB,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        hidden_act="silu",
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
    )


def byt5_config() -> T5Config:
    """The encoder of ByT5-small with Glyph-SDXL-v2's vocabulary."""
    from transformers import T5Config

    return T5Config(
        vocab_size=BYT5_VOCAB,
        d_model=1472,
        d_kv=64,
        d_ff=3584,
        num_layers=12,
        num_heads=6,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        is_encoder_decoder=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def siglip_config() -> SiglipVisionConfig:
    """The vision tower of SigLIP so400m-patch14-384, as FLUX.1-Redux-dev ships it."""
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        num_channels=3,
        image_size=384,
        patch_size=14,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    )


def base_checkpoint(resolution: str) -> Checkpoint:
    """The official base (not distilled) checkpoint of ``resolution``: its shift and guidance."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    return next(c for c in CHECKPOINTS if c.resolution == resolution and c.distilled is None)


@contextlib.contextmanager
def _building(device: torch.device | str, dtype: torch.dtype, seed: int) -> Iterator[None]:
    """Models built within are on ``device`` in ``dtype``, their random weights drawn from
    ``seed``; the caller's default dtype and RNG states are left as they were."""
    device = torch.device(device)
    previous = torch.get_default_dtype()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), device:
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)


def build_full_size_transformer(
    device: torch.device | str,
    resolution: str = "480p",
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
) -> HunyuanVideo15Transformer3DModel:
    """The 8.3B transformer of the ``resolution`` image-to-video checkpoint, random weights, on
    ``device`` (about 16.7 GB in bf16; nothing on ``meta``), in eval mode."""
    from diffusers.models.transformers.transformer_hunyuan_video15 import (
        HunyuanVideo15Transformer3DModel,
    )

    config = TRANSFORMER_CONFIGS[base_checkpoint(resolution).resolution]  # checks resolution
    with _building(device, dtype, seed):
        transformer: HunyuanVideo15Transformer3DModel = HunyuanVideo15Transformer3DModel(**config)
    transformer.eval()
    return transformer


def build_full_size_vae(
    device: torch.device | str, seed: int = 0, dtype: torch.dtype = torch.float16
) -> AutoencoderKLHunyuanVideo15:
    """The 1.5 VAE, random weights, on ``device``, in eval mode."""
    from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import (
        AutoencoderKLHunyuanVideo15,
    )

    with _building(device, dtype, seed):
        vae: AutoencoderKLHunyuanVideo15 = AutoencoderKLHunyuanVideo15(**VAE_CONFIG)
    vae.eval()
    return vae


def build_full_size_pipeline(
    device: torch.device | str, resolution: str = "480p", seed: int = 0
) -> FramecastHunyuan15Pipeline:
    """Every component at full size with random weights drawn from ``seed``, built on
    ``device`` in the official precisions (about 35 GB on a GPU; nothing on ``meta``).

    Each model draws from its own seed (``seed`` plus its place in the pipeline), so building
    one alone (:func:`build_full_size_transformer`) gives the same weights.
    """
    from diffusers.guiders.classifier_free_guidance import ClassifierFreeGuidance
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
        FlowMatchEulerDiscreteScheduler,
    )
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextModel, SiglipVisionModel, T5EncoderModel

    from framecast.engines.hunyuan15.pipeline import FramecastHunyuan15Pipeline
    from framecast.engines.hunyuan15.tiny import _qwen_tokenizer, siglip_image_processor

    checkpoint = base_checkpoint(resolution)
    transformer = build_full_size_transformer(device, resolution, seed)
    vae = build_full_size_vae(device, seed + 1)
    with _building(device, torch.float16, seed + 2):
        text_encoder = Qwen2_5_VLTextModel(qwen_config())
    with _building(device, torch.float32, seed + 3):
        text_encoder_2 = T5EncoderModel(byt5_config())
    with _building(device, torch.float16, seed + 4):
        image_encoder = SiglipVisionModel(siglip_config())
    encoders: tuple[torch.nn.Module, ...] = (text_encoder, text_encoder_2, image_encoder)
    for model in encoders:
        model.eval()
    return FramecastHunyuan15Pipeline(
        text_encoder=text_encoder,
        # A Unigram model in the fast-tokenizer interface, where the annotation names the BPE
        # Qwen2Tokenizer (as in tiny.py).
        tokenizer=_qwen_tokenizer(),  # type: ignore[arg-type]
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=checkpoint.flow_shift),
        text_encoder_2=text_encoder_2,
        tokenizer_2=ByT5Tokenizer(),
        guider=ClassifierFreeGuidance(guidance_scale=checkpoint.guidance_scale),
        image_encoder=image_encoder,
        feature_extractor=siglip_image_processor(),
    )
