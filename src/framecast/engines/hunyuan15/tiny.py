"""A tiny, randomly initialised HunyuanVideo 1.5 image-to-video pipeline, built in memory.

It has the structure of ``hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v``: the
Qwen2.5-VL text model and the ByT5 glyph encoder, the SigLIP image encoder, the causal VAE with
16x spatial and 4x temporal compression, the transformer, the flow-match scheduler and the CFG
guider, with every width cut to a handful of channels, so tests and smoke runs can drive
diffusers' real code paths on a CPU in about a second and without any download.

What is kept at full size is whatever the pipeline hard-codes: SigLIP sees 384 px in 14 px
patches (the 729 image tokens the pipeline expects), and the Qwen tokenizer splits text as
Qwen2 does, so the pipeline's ``prompt_template_encode_start_idx`` (108: the chat template's
system turn) crops exactly the system turn here too.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Final

import torch

from framecast.engines.hunyuan.tiny import (
    UNK,
    _default_dtype,
    _pre_tokens,
    _token_id,
    _word_tokenizer,
)
from framecast.models.hunyuan15_i2v import CHECKPOINTS, SrCheckpoint

if TYPE_CHECKING:
    from diffusers.models.transformers.transformer_hunyuan_video15 import (
        HunyuanVideo15Transformer3DModel,
    )

    # From its own module: mypy resolves the top-level diffusers name to a torch-less dummy.
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
        HunyuanVideo15ImageToVideoPipeline,
    )
    from transformers import PreTrainedTokenizerFast

    from framecast.engines.hunyuan15.sr import SrModels

LATENT_CHANNELS: Final = 4
TARGET_SIZE: Final = 64
"""The base of its size buckets (the real ones have 640 or 960): images of a few dozen pixels
get a video of a few dozen pixels, so the stock pipeline runs on it in a second."""

QWEN_PRETOKENIZE_PATTERN: Final = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Qwen2's pre-tokenizer regex: token boundaries, and so the template's token count, follow it."""

IM_START: Final = "<|im_start|>"
IM_END: Final = "<|im_end|>"
END_OF_TEXT: Final = "<|endoftext|>"

CHAT_TEMPLATE: Final = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Qwen2.5-VL's chat template for text-only messages, the only kind the pipeline sends."""

TEXT_HIDDEN: Final = 16
BYT5_HIDDEN: Final = 8
SIGLIP_HIDDEN: Final = 8
SR_TARGET_SIZE: Final = 2 * TARGET_SIZE
"""The tiny SR transformers' bucket base (recorded in their config as the real ones' is)."""

SIGLIP_IMAGE_SIZE: Final = 384
SIGLIP_PATCH_SIZE: Final = 14


def build_tiny_pipeline(
    seed: int = 0, *, step_distilled: bool = False
) -> HunyuanVideo15ImageToVideoPipeline:
    """A complete 1.5 image-to-video pipeline with random float32 weights drawn from ``seed``.

    ``step_distilled`` makes it look like the step-distilled checkpoint (a MeanFlow
    transformer, with that checkpoint's guidance and shift) rather than the default one.
    The caller's global torch RNG state is left as it was.
    """
    step = next(c for c in CHECKPOINTS if c.distilled == "step")
    like = step if step_distilled else CHECKPOINTS[0]
    # Each from its own module, for the same reason as above; here, not at the top, so that
    # importing this module stays cheap.
    from diffusers.guiders.classifier_free_guidance import ClassifierFreeGuidance
    from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import (
        AutoencoderKLHunyuanVideo15,
    )
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
        HunyuanVideo15ImageToVideoPipeline,
    )
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
        FlowMatchEulerDiscreteScheduler,
    )
    from transformers import (
        ByT5Tokenizer,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLTextModel,
        SiglipVisionConfig,
        SiglipVisionModel,
        T5Config,
        T5EncoderModel,
    )

    tokenizer = _qwen_tokenizer()
    tokenizer_2 = ByT5Tokenizer()  # byte-level: no vocabulary file to download
    text_config = Qwen2_5_VLTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=32,
        # Three: the pipeline reads the hidden states two layers from the end, so one real
        # layer (attention mask, positions) lies on the path it uses.
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        # The 7B model's multimodal RoPE, scaled to an 8-wide head: 2 sections of the 4
        # frequencies for time, 1 each for height and width.
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]},
        max_position_embeddings=2048,
        bos_token_id=None,
        eos_token_id=_token_id(tokenizer, IM_END),
        pad_token_id=_token_id(tokenizer, END_OF_TEXT),
    )
    byt5_config = T5Config(
        vocab_size=len(tokenizer_2),
        d_model=BYT5_HIDDEN,
        d_kv=4,
        d_ff=16,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",  # ByT5's
        is_encoder_decoder=False,
        pad_token_id=tokenizer_2.pad_token_id,
        eos_token_id=tokenizer_2.eos_token_id,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=SIGLIP_HIDDEN,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=SIGLIP_IMAGE_SIZE,
        patch_size=SIGLIP_PATCH_SIZE,
    )

    with torch.random.fork_rng(devices=[]), _default_dtype(torch.float32):
        torch.manual_seed(seed)
        # noise, the image latent, its mask
        transformer = _tiny_transformer(2 * LATENT_CHANNELS + 1, TARGET_SIZE, step_distilled)
        vae = AutoencoderKLHunyuanVideo15(
            latent_channels=LATENT_CHANNELS,
            # Five levels as the real VAE has: four halve height and width, two of them time.
            # Few channels at the levels with the most pixels: a 640x640 5-frame decode on one
            # CPU thread takes 15.3 s with 8 channels at every level, 4.7 s with these.
            block_out_channels=(2, 4, 8, 8, 8),
            layers_per_block=1,
            spatial_compression_ratio=16,
            temporal_compression_ratio=4,
        )
        text_encoder = Qwen2_5_VLTextModel(text_config)
        text_encoder_2 = T5EncoderModel(byt5_config)
        image_encoder = SiglipVisionModel(vision_config)
    for model in (transformer, vae, text_encoder, text_encoder_2, image_encoder):
        # Modules start in training mode; from_pretrained hands them over in eval mode.
        model.eval()

    pipe: HunyuanVideo15ImageToVideoPipeline = HunyuanVideo15ImageToVideoPipeline(
        text_encoder=text_encoder,
        # The annotation names Qwen2Tokenizer, a BPE class that cannot hold this Unigram model;
        # the pipeline only needs the fast-tokenizer interface (and its chat template).
        tokenizer=tokenizer,  # type: ignore[arg-type]
        transformer=transformer,
        vae=vae,
        # As the hub checkpoint's configs: its official shift and guidance.
        scheduler=FlowMatchEulerDiscreteScheduler(shift=like.flow_shift),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        guider=ClassifierFreeGuidance(guidance_scale=like.guidance_scale),
        image_encoder=image_encoder,
        feature_extractor=siglip_image_processor(),
    )
    return pipe


def _tiny_transformer(
    in_channels: int, target_size: int, step_distilled: bool
) -> HunyuanVideo15Transformer3DModel:
    from diffusers.models.transformers.transformer_hunyuan_video15 import (
        HunyuanVideo15Transformer3DModel,
    )

    model: HunyuanVideo15Transformer3DModel = HunyuanVideo15Transformer3DModel(
        in_channels=in_channels,
        out_channels=LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=16,
        # Two blocks: First Block Cache needs a first block to decide and others to skip.
        num_layers=2,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=TEXT_HIDDEN,
        text_embed_2_dim=BYT5_HIDDEN,
        image_embed_dim=SIGLIP_HIDDEN,
        rope_axes_dim=(4, 6, 6),
        target_size=target_size,
        task_type="i2v",
        use_meanflow=step_distilled,
    )
    return model


def build_tiny_sr(checkpoint: SrCheckpoint, seed: int = 1) -> SrModels:
    """A tiny random SR stage for the tiny pipeline: a transformer of its shape with the SR
    checkpoints' input (noise, the image-to-video condition and its mask, the low-resolution
    latent and its mask), and the checkpoint's kind of upsampler, a few channels wide."""
    from framecast.engines.hunyuan15.sr import SrModels
    from framecast.engines.hunyuan15.upsampler import Upsampler720p, Upsampler1080p

    with torch.random.fork_rng(devices=[]), _default_dtype(torch.float32):
        torch.manual_seed(seed)
        transformer = _tiny_transformer(3 * LATENT_CHANNELS + 2, SR_TARGET_SIZE, False)
        upsampler: torch.nn.Module
        if checkpoint.resolution == "720p":
            upsampler = Upsampler720p(LATENT_CHANNELS, LATENT_CHANNELS, 8, 1, True)
        else:
            upsampler = Upsampler1080p(LATENT_CHANNELS, LATENT_CHANNELS, (8,), 0)
    return SrModels(checkpoint, transformer.eval(), upsampler.eval())


def siglip_image_processor() -> Any:
    """The published settings of SigLIP so400m-patch14-384's processor: 384x384, bicubic,
    pixels scaled to [-1, 1]. The PIL class: without torchvision, transformers maps the
    default one to it anyway, and naming it keeps the pixels the same where it is installed."""
    from transformers import SiglipImageProcessorPil
    from transformers.image_utils import PILImageResampling

    return SiglipImageProcessorPil(
        size={"height": SIGLIP_IMAGE_SIZE, "width": SIGLIP_IMAGE_SIZE},
        resample=PILImageResampling.BICUBIC,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def _template_words() -> list[str]:
    """Every Qwen2 pre-token of the pipeline's system turn, in order, each once."""
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
        HunyuanVideo15ImageToVideoPipeline,
    )

    # The pipeline's system message is set in __init__; the encoder's default is the same text.
    system = (
        inspect.signature(HunyuanVideo15ImageToVideoPipeline._get_mllm_prompt_embeds)
        .parameters["system_message"]
        .default
    )
    # Special tokens are cut out before pre-tokenization, so the regex never sees across them.
    segments = (f"system\n{system}", "\n", "user\n", "assistant\n")
    return _pre_tokens(QWEN_PRETOKENIZE_PATTERN, segments)


def _qwen_tokenizer() -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    specials = (END_OF_TEXT, IM_START, IM_END)
    backend = _word_tokenizer(_template_words(), QWEN_PRETOKENIZE_PATTERN, specials)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        unk_token=UNK,
        model_max_length=32768,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
    )
