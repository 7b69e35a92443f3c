"""A tiny, randomly initialised HunyuanVideo-I2V pipeline, built in memory.

It has the structure of the 16-channel token_replace checkpoint
``hunyuanvideo-community/HunyuanVideo-I2V`` (LLaVA-Llama-3 and CLIP text encoders, the causal
3D VAE with 8x spatial and 4x temporal compression, the dual/single-stream transformer with
guidance embedding) with every width cut to a handful of channels, so tests and smoke runs can
drive diffusers' real code paths on a CPU in well under a second and without any download.

What is kept at full size is whatever the pipeline hard-codes: the LLaVA image becomes 576
image tokens (336 px, 14 px patches), and the Llama tokenizer splits text exactly as Llama-3
does, so diffusers' default I2V prompt template (``crop_start=103``, ``<image>`` at index 5)
is exactly right for it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import Unigram
from tokenizers.processors import TemplateProcessing

from framecast.models.hunyuan_i2v import FLOW_SHIFT_STABLE

if TYPE_CHECKING:
    # From its own module: mypy resolves `diffusers.HunyuanVideoImageToVideoPipeline` to the
    # torch-less dummy placeholder of the same name.
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import (
        HunyuanVideoImageToVideoPipeline,
    )
    from transformers import PreTrainedTokenizerFast

LATENT_CHANNELS: Final = 4

LLAMA_PRETOKENIZE_PATTERN: Final = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Llama-3's pre-tokenizer regex: token boundaries, and so the template's token counts, follow it."""

CLIP_PRETOKENIZE_PATTERN: Final = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"

BOS: Final = "<|begin_of_text|>"
EOS: Final = "<|end_of_text|>"
START_HEADER: Final = "<|start_header_id|>"
END_HEADER: Final = "<|end_header_id|>"
EOT: Final = "<|eot_id|>"
IMAGE: Final = "<image>"
PAD: Final = "<pad>"
UNK: Final = "<unk>"
LLAMA_SPECIAL_TOKENS: Final = (BOS, EOS, START_HEADER, END_HEADER, EOT, IMAGE, PAD)

CLIP_BOS: Final = "<|startoftext|>"
CLIP_EOS: Final = "<|endoftext|>"
CLIP_MAX_LENGTH: Final = 77

# Log-probabilities for the Unigram models: a whole template word (-1) always beats spelling it
# out (-10 a character), so the template tokenizes word by word and anything else still encodes.
_WORD_SCORE: Final = -1.0
_CHAR_SCORE: Final = -10.0
_FALLBACK_CHARS: Final = (*(chr(c) for c in range(32, 127)), "\t", "\n", "\r")


def build_tiny_pipeline(seed: int = 0) -> HunyuanVideoImageToVideoPipeline:
    """A complete HunyuanVideo-I2V pipeline with random float32 weights drawn from ``seed``.

    The caller's global torch RNG state is left as it was.
    """
    # Each from its own module, for the same reason as above. Imported here, not at the top, so
    # that importing this module stays cheap.
    from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import (
        AutoencoderKLHunyuanVideo,
    )
    from diffusers.models.transformers.transformer_hunyuan_video import (
        HunyuanVideoTransformer3DModel,
    )
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import (
        HunyuanVideoImageToVideoPipeline,
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

    tokenizer = _llama_tokenizer()
    tokenizer_2 = _clip_tokenizer()
    pad_token_id = _token_id(tokenizer, PAD)

    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=37,
        # Three: the pipeline reads the hidden states two layers from the end, so one real
        # layer (attention mask, positions) lies on the path it uses.
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        rms_norm_eps=1e-5,
        bos_token_id=_token_id(tokenizer, BOS),
        eos_token_id=_token_id(tokenizer, EOS),
        pad_token_id=pad_token_id,
    )
    vision_config = CLIPVisionConfig(
        hidden_size=8,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=336,
        patch_size=14,
        projection_dim=8,
    )
    llava_config = llava_config_for(text_config, vision_config, tokenizer)
    clip_text_config = CLIPTextConfig(
        vocab_size=len(tokenizer_2),
        hidden_size=8,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=8,
        bos_token_id=_token_id(tokenizer_2, CLIP_BOS),
        # CLIPTextModel pools the hidden state at the first eos_token_id; the legacy id 2 would
        # make it pool at the highest token id instead.
        eos_token_id=_token_id(tokenizer_2, CLIP_EOS),
        pad_token_id=_token_id(tokenizer_2, CLIP_EOS),
    )

    with torch.random.fork_rng(devices=[]), _default_dtype(torch.float32):
        torch.manual_seed(seed)
        transformer = HunyuanVideoTransformer3DModel(
            in_channels=LATENT_CHANNELS,
            out_channels=LATENT_CHANNELS,
            num_attention_heads=2,
            attention_head_dim=16,  # a multiple of 16: the fp8 path converts it
            num_layers=1,
            num_single_layers=1,
            num_refiner_layers=1,
            mlp_ratio=4.0,
            patch_size=2,
            patch_size_t=1,
            qk_norm="rms_norm",
            guidance_embeds=True,
            text_embed_dim=text_config.hidden_size,
            pooled_projection_dim=clip_text_config.hidden_size,
            rope_theta=256.0,
            rope_axes_dim=(4, 6, 6),
            image_condition_type="token_replace",
        )
        vae = AutoencoderKLHunyuanVideo(
            in_channels=3,
            out_channels=3,
            latent_channels=LATENT_CHANNELS,
            down_block_types=("HunyuanVideoDownBlock3D",) * 4,
            up_block_types=("HunyuanVideoUpBlock3D",) * 4,
            # Few channels where the pixels are many: the decode at full resolution is most of
            # a tiny-model request on a CPU (the tiled 360p decode: 5.2 s with 8 channels a
            # level, 4.0 s with 4, 1.9 s with these).
            block_out_channels=(2, 2, 4, 4),
            layers_per_block=1,
            act_fn="silu",
            norm_num_groups=2,
            scaling_factor=0.476986,
            spatial_compression_ratio=8,
            temporal_compression_ratio=4,
            mid_block_add_attention=True,
        )
        text_encoder = LlavaForConditionalGeneration(llava_config)
        text_encoder_2 = CLIPTextModel(clip_text_config)
    for model in (transformer, vae, text_encoder, text_encoder_2):
        # Modules start in training mode; from_pretrained hands them over in eval mode.
        model.eval()

    image_processor = llava_image_processor()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT_STABLE)

    pipe: HunyuanVideoImageToVideoPipeline = HunyuanVideoImageToVideoPipeline(
        text_encoder=text_encoder,
        # The annotations name LlamaTokenizer and CLIPTokenizer, but those transformers 5 classes
        # rebuild a BPE model when loaded and cannot hold a Unigram one; the pipeline only needs
        # the generic fast-tokenizer interface.
        tokenizer=tokenizer,  # type: ignore[arg-type]
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,  # type: ignore[arg-type]
        # Without torchvision, transformers maps CLIPImageProcessor to this PIL class anyway;
        # naming it keeps the pixels the same on machines that do have torchvision.
        image_processor=image_processor,
    )
    return pipe


def llava_config_for(text_config: Any, vision_config: Any, tokenizer: Any) -> Any:
    """LLaVA wired to ``tokenizer`` the way diffusers' I2V template expects: 576 image tokens
    (a 336 px image in 14 px patches, CLS dropped) from the second-to-last vision layer."""
    from transformers import LlavaConfig

    return LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=_token_id(tokenizer, IMAGE),
        image_seq_length=576,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        # transformers 5 dropped pad_token_id from LlavaConfig, but diffusers reads it from there
        # to pad the prompt after splicing in the image tokens.
        pad_token_id=_token_id(tokenizer, PAD),  # type: ignore[call-arg]
    )


def llava_image_processor() -> Any:
    """The LLaVA image processor's published settings (shortest edge and crop 336, bicubic)."""
    from transformers import CLIPImageProcessorPil
    from transformers.image_utils import PILImageResampling
    from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    return CLIPImageProcessorPil(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        resample=PILImageResampling.BICUBIC,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        raise ValueError(f"{token!r} is not in the tokenizer's vocabulary")
    return token_id


def _template_words() -> list[str]:
    """Every Llama-3 pre-token of diffusers' default I2V template, in order, each once."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import (
        DEFAULT_PROMPT_TEMPLATE,
    )

    template = str(DEFAULT_PROMPT_TEMPLATE["template"]).replace("{}", "")
    specials = "|".join(re.escape(t) for t in LLAMA_SPECIAL_TOKENS)
    # Added tokens are cut out before pre-tokenization, so the regex never sees across them.
    return _pre_tokens(LLAMA_PRETOKENIZE_PATTERN, re.split(specials, template))


def _pre_tokens(pattern: str, segments: Iterable[str]) -> list[str]:
    """Every piece ``pattern`` splits ``segments`` into, in order, each once."""
    splitter = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    words: dict[str, None] = {}
    for segment in segments:
        for word, _ in splitter.pre_tokenize_str(segment):
            words[word] = None
    return list(words)


def _unigram(words: list[str], chars: tuple[str, ...]) -> Unigram:
    vocab = [(UNK, 0.0)]
    seen = {UNK}
    for piece, score in [(w, _WORD_SCORE) for w in words] + [(c, _CHAR_SCORE) for c in chars]:
        if piece not in seen:
            seen.add(piece)
            vocab.append((piece, score))
    return Unigram(vocab, unk_id=0, byte_fallback=False)


def _word_tokenizer(words: list[str], pattern: str, specials: Iterable[str]) -> Tokenizer:
    """A Unigram tokenizer that keeps ``words`` whole and spells anything else out, splitting
    text where ``pattern`` does, with ``specials`` added after the rest."""
    backend = Tokenizer(_unigram(words, _FALLBACK_CHARS))
    # Llama-3 and Qwen2 follow the regex with a byte-level mapping; without one the vocabulary
    # can hold the template's words as they are, and the token boundaries are the same.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return backend


def _llama_tokenizer() -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    backend = _word_tokenizer(_template_words(), LLAMA_PRETOKENIZE_PATTERN, LLAMA_SPECIAL_TOKENS)
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=8192,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def _clip_tokenizer() -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    # CLIP lowercases and drops whitespace; characters are enough to tell prompts apart.
    backend = Tokenizer(_unigram([], tuple(c for c in _FALLBACK_CHARS if not c.isspace())))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.Split(
        Regex(CLIP_PRETOKENIZE_PATTERN), behavior="removed", invert=True
    )
    backend.decoder = decoders.Fuse()
    # Like the real CLIP vocabulary, the two specials come last.
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (CLIP_BOS, CLIP_EOS)]
    )
    backend.post_processor = TemplateProcessing(
        single=f"{CLIP_BOS} $A {CLIP_EOS}",
        pair=f"{CLIP_BOS} $A {CLIP_EOS} {CLIP_BOS} $B {CLIP_EOS}",
        special_tokens=[
            (CLIP_BOS, backend.token_to_id(CLIP_BOS)),
            (CLIP_EOS, backend.token_to_id(CLIP_EOS)),
        ],
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        # Real CLIP pads with its end-of-text token; the text model pools at the first one.
        pad_token=CLIP_EOS,
        unk_token=UNK,
        model_max_length=CLIP_MAX_LENGTH,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
