"""The computed peak GPU memory of a HunyuanVideo 1.5 request (engines/hunyuan15/memory.py).

Its constants are recounted on the full-size model built on the meta device, and the
activations it counts are traced there: a dispatch mode adds up the bytes of every tensor
alive (the models' weights excepted) while diffusers' own code runs a transformer block and a
VAE tile at full width on the meta device, which allocates nothing. The rest is arithmetic,
and the table in docs/performance.md is the module's own output.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

import diffusers.models.transformers.transformer_hunyuan_video as hunyuan_video
import torch
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15TransformerBlock,
)

from framecast.engines.hunyuan.speedups import UnmaskedAttnProcessor
from framecast.engines.hunyuan15 import memory
from framecast.engines.hunyuan15.engine import OFFLOAD_MODES
from framecast.engines.hunyuan15.fullsize import (
    TRANSFORMER_CONFIGS,
    build_full_size_pipeline,
    build_full_size_transformer,
    build_full_size_vae,
)
from framecast.engines.hunyuan15.memory import (
    COMPONENTS,
    SIZES,
    GiB,
    MiB,
    fits,
    peak,
    peak_bytes,
    refusal,
    text_encoder_headroom,
    tokens,
    transformer_pass_bytes,
    vae_decode_bytes,
)
from framecast.engines.hunyuan15.pipeline import OFFICIAL_VAE_TILING, FramecastHunyuan15Pipeline
from framecast.models import hunyuan15_i2v

from .live_bytes import LiveBytes

DOC = Path(__file__).parents[2] / "docs" / "performance.md"
H100 = 81_559 * MiB
L40S = 46_068 * MiB
RTX_4090 = 24_564 * MiB


@pytest.fixture(scope="module")
def pipe() -> Iterator[FramecastHunyuan15Pipeline]:
    yield build_full_size_pipeline("meta", "720p")


# -- The constants against the full-size model ----------------------------------------------


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def largest_leaf(module: torch.nn.Module) -> int:
    return max(sum(p.numel() for p in m.parameters(recurse=False)) for m in module.modules())


def test_parameter_counts_are_the_models(pipe: FramecastHunyuan15Pipeline) -> None:
    for component in COMPONENTS:
        model: torch.nn.Module = getattr(pipe, component.name)
        assert params(model) == component.params, component.name
        assert {p.element_size() for p in model.parameters()} == {component.bytes_per_param}
        assert largest_leaf(model) == component.largest_leaf_params, component.name
    blocks = pipe.transformer.transformer_blocks
    assert len(blocks) == memory.TRANSFORMER_BLOCKS
    assert {params(b) for b in blocks} == {memory.TRANSFORMER_BLOCK_PARAMS}
    assert params(pipe.transformer) - params(blocks) == memory.TRANSFORMER_OUTSIDE_BLOCKS_PARAMS
    layers = pipe.text_encoder.layers
    assert {params(layer) for layer in layers} == {memory.QWEN_LAYER_PARAMS}
    assert params(pipe.text_encoder) - params(layers) == memory.QWEN_OUTSIDE_LAYERS_PARAMS
    # Group offload splits a model at its top-level ModuleLists only: these three have none.
    for name in ("vae", "text_encoder_2", "image_encoder"):
        model = getattr(pipe, name)
        assert not any(isinstance(m, torch.nn.ModuleList) for m in model.children()), name


def test_architecture_constants_are_the_configs(pipe: FramecastHunyuan15Pipeline) -> None:
    t = pipe.transformer.config
    assert t.num_attention_heads * t.attention_head_dim == memory.HIDDEN
    assert (t.attention_head_dim, t.mlp_ratio) == (memory.HEAD_DIM, memory.MLP_RATIO)
    assert t.in_channels == memory.TRANSFORMER_IN_CHANNELS
    assert memory.LATENT_CHANNELS == t.out_channels == pipe.vae.config.latent_channels
    assert (t.patch_size, t.patch_size_t) == (1, 1)
    v = pipe.vae.config
    assert v.block_out_channels[0] == memory.VAE_LAST_CHANNELS
    assert v.spatial_compression_ratio == memory.SPATIAL_COMPRESSION
    assert v.temporal_compression_ratio == memory.TEMPORAL_COMPRESSION
    assert pipe.tokenizer_max_length == memory.QWEN_TEXT_TOKENS
    assert pipe.tokenizer_max_length + pipe.prompt_template_encode_start_idx == memory.QWEN_TOKENS
    assert pipe.tokenizer_2_max_length == memory.BYT5_TOKENS
    assert pipe.vision_num_semantic_tokens == memory.SIGLIP_TOKENS
    q = pipe.text_encoder.config
    assert (q.hidden_size, q.intermediate_size) == (memory.QWEN_HIDDEN, memory.QWEN_MLP)
    assert q.num_hidden_layers == memory.QWEN_LAYERS
    b = pipe.text_encoder_2.config
    assert (b.d_model, b.d_ff, 6) == (memory.BYT5_HIDDEN, memory.BYT5_MLP, memory.BYT5_HEADS)
    s = pipe.image_encoder.config
    assert (s.hidden_size, s.intermediate_size) == (memory.SIGLIP_HIDDEN, memory.SIGLIP_MLP)
    assert s.num_attention_heads == memory.SIGLIP_HEADS


def test_the_rest_agrees_with_the_engine() -> None:
    assert memory.OFFLOAD_MODES == OFFLOAD_MODES
    assert OFFICIAL_VAE_TILING["tile_sample_min_height"] == memory.VAE_TILE
    assert OFFICIAL_VAE_TILING["tile_sample_min_width"] == memory.VAE_TILE
    assert OFFICIAL_VAE_TILING["tile_overlap_factor"] == memory.VAE_TILE_OVERLAP
    for resolution, size in SIZES.items():
        assert hunyuan15_i2v.SIZES[("16:9", resolution)] == size


def test_importing_it_imports_no_torch() -> None:
    code = "import sys, framecast.engines.hunyuan15.memory; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- The activations, traced ------------------------------------------------------------------


def flash_attention(query: torch.Tensor, *_args: Any, **_kwargs: Any) -> torch.Tensor:
    """What a flash or cuDNN kernel allocates: the output and the fp32 log-sum-exp."""
    batch, seq, heads, _dim = query.shape
    torch.empty(batch, heads, seq, dtype=torch.float32, device=query.device)
    return torch.empty_like(query)


def traced_block_bytes(video: int, text: int) -> tuple[int, int]:
    """A full-width dual-stream block on the exact path: (its inputs, the peak above them)."""
    config = TRANSFORMER_CONFIGS["720p"]
    with torch.device("meta"):
        block = HunyuanVideo15TransformerBlock(
            config["num_attention_heads"], config["attention_head_dim"], config["mlp_ratio"]
        ).to(torch.bfloat16)
    processor = UnmaskedAttnProcessor()
    processor.unpadded = True  # no mask, as the exact path
    attn: Any = block.attn
    attn.set_processor(processor)
    hidden = memory.HIDDEN
    with torch.inference_mode(), LiveBytes() as live:
        x = torch.empty(1, video, hidden, dtype=torch.bfloat16, device="meta")
        context = torch.empty(1, text, hidden, dtype=torch.bfloat16, device="meta")
        temb = torch.empty(1, hidden, dtype=torch.bfloat16, device="meta")
        rope = tuple(torch.empty(video, memory.HEAD_DIM, device="meta") for _ in range(2))
        inputs = live.now
        block(x, context, temb, None, rope)
    return inputs, live.peak - inputs


@pytest.mark.parametrize(("video", "text"), [(4000, 0), (8000, 0), (8000, 1985)])
def test_a_blocks_live_set_is_the_counted_one(
    monkeypatch: pytest.MonkeyPatch, video: int, text: int
) -> None:
    monkeypatch.setattr(hunyuan_video, "dispatch_attention_fn", flash_attention)
    inputs, above = traced_block_bytes(video, max(text, 1))
    text = max(text, 1)
    # The inputs: x and the context (one hidden each), and the rotary cos and sin.
    assert inputs == pytest.approx(
        (video + text) * memory.HIDDEN * 2 + video * 2 * memory.HEAD_DIM * 4, abs=8192
    )
    # Above them, at the peak: what BLOCK_BYTES_PER_*_TOKEN count less the inputs themselves.
    counted = (
        video * memory.BLOCK_BYTES_PER_VIDEO_TOKEN
        + text * memory.BLOCK_BYTES_PER_TEXT_TOKEN
        - inputs
    )
    assert above == pytest.approx(counted, rel=0.002)


@pytest.mark.parametrize("latent_frames", [2, 5])
def test_a_vae_tiles_live_set_is_the_counted_one(latent_frames: int) -> None:
    vae = build_full_size_vae("meta")
    tile = memory.VAE_TILE // memory.SPATIAL_COMPRESSION
    frames = (latent_frames - 1) * memory.TEMPORAL_COMPRESSION + 1
    with torch.inference_mode(), LiveBytes() as live:
        z = torch.empty(1, memory.LATENT_CHANNELS, latent_frames, tile, tile, device="meta")
        out = vae.decoder(z.half())
    assert tuple(out.shape) == (1, 3, frames, memory.VAE_TILE, memory.VAE_TILE)
    elements = memory.VAE_LAST_CHANNELS * memory.VAE_TILE**2 * frames
    assert live.peak == pytest.approx(memory.VAE_DECODE_BYTES_PER_ELEMENT * elements, rel=0.01)


def test_the_vae_encoders_live_set_is_the_counted_one() -> None:
    vae = build_full_size_vae("meta")
    width, height = 512, 256
    with torch.inference_mode(), LiveBytes() as live:
        vae.encoder(torch.empty(1, 3, 1, height, width, dtype=torch.float16, device="meta"))
    assert live.peak == pytest.approx(memory.vae_encode_bytes(width, height), rel=0.01)


# -- The arithmetic ---------------------------------------------------------------------------


def test_token_counts() -> None:
    # Latent grid (frames (n-1)/4+1, height/16, width/16) and 1000 + 256 + 729 text tokens.
    assert tokens(848, 480, 121) == 31 * 30 * 53 + 1985 == 51_275
    assert tokens(1280, 720, 121) == 113_585
    assert tokens(1280, 720, 241) == 221_585
    with pytest.raises(ValueError, match="4n"):
        tokens(1280, 720, 120)
    with pytest.raises(ValueError, match="multiples of 16"):
        tokens(1280, 712, 121)


def test_activations_grow_linearly_in_tokens() -> None:
    a, b, c = (transformer_pass_bytes(1280, 720, n) for n in (121, 181, 241))
    assert b - a == c - b  # 15 more latent frames each
    per_token = (c - a) / (30 * 45 * 80)
    assert per_token == memory.BLOCK_BYTES_PER_VIDEO_TOKEN + memory.LATENT_BYTES_PER_VIDEO_TOKEN
    assert memory.BLOCK_BYTES_PER_VIDEO_TOKEN == 50_176
    # The decode's working set grows with the frames, not the size: the tiles are 256 pixels.
    assert vae_decode_bytes(1280, 720, 241) - vae_decode_bytes(848, 480, 241) < 1.1 * GiB
    ratio = vae_decode_bytes(1280, 720, 241) / vae_decode_bytes(1280, 720, 121)
    assert ratio == pytest.approx(241 / 121, rel=0.001)  # every frame at once


def test_the_breakdown_sums() -> None:
    for offload in OFFLOAD_MODES:
        p = peak("720p", 241, offload)
        assert [phase.name for phase in p.phases] == [
            "text encoder",
            "glyph encoder",
            "image encoders",
            "denoise",
            "decode",
        ]
        assert p.bytes == max(phase.weights + phase.work for phase in p.phases)
        assert p.bytes == p.phase.bytes == peak_bytes("720p", 241, offload)
        assert p.required == math.ceil(p.bytes * 1.05) + GiB
    none = peak("720p", 241, "none")
    everything = sum(c.bytes for c in COMPONENTS)
    assert none.phases[0].weights == everything  # the text encoder visits the rest
    assert none.phases[-1].weights == everything - memory.TEXT_ENCODER.bytes
    assert peak("720p", 241, "none", True).phases[-1].weights == everything


def test_720p_241_frames_without_offload_is_the_docs_figure() -> None:
    p = peak("720p", 241, "none")
    assert p.phase.name == "decode"
    assert round(p.bytes / GiB, 1) == 47.4
    assert round(p.phase.weights / GiB, 1) == 19.5 and round(p.phase.work / GiB, 1) == 28.0
    assert (
        "| 720p 1280x720, 241 | `none` | 47.4 | decode | 19.5 + 28.0 | no | no | yes | yes |"
        in (memory.table())
    )


def test_the_doc_shows_the_modules_table() -> None:
    doc = DOC.read_text()
    assert "### HunyuanVideo 1.5: peak GPU memory, computed" in doc
    assert memory.table() in doc
    assert "python -m framecast.engines.hunyuan15.memory" in doc


def test_each_offload_mode_needs_less_than_the_one_before() -> None:
    for size, frames in memory.TABLE_CASES:
        peaks = [peak_bytes(size, frames, mode) for mode in OFFLOAD_MODES]
        assert peaks == sorted(peaks, reverse=True), (size, frames)
        assert peak_bytes(size, frames, "none", True) > peaks[0]


def test_fits_and_refusal() -> None:
    assert fits(H100, "720p", 241, "none", text_encoder_resident=True)
    assert not fits(L40S, "720p", 241, "none")
    assert fits(L40S, "720p", 241, "model")
    assert refusal(H100, "720p", 241) is None
    line = refusal(L40S, "720p", 241)
    assert line is not None and "\n" not in line
    assert line.startswith("HunyuanVideo 1.5 at 1280x720, 241 frames, FRAMECAST_OFFLOAD=none")
    assert "computed" in line and "FRAMECAST_OFFLOAD=model" in line and "frames" in line
    # No mode decodes 241 frames on a 24 GB card: the decode's tile alone is 26 GiB.
    line = refusal(RTX_4090, (848, 480), 241, "sequential")
    assert line is not None and "FRAMECAST_OFFLOAD=" not in line.split(";")[-1]
    assert not any(fits(RTX_4090, (848, 480), 241, mode) for mode in OFFLOAD_MODES)
    with pytest.raises(ValueError, match="offload=none"):
        peak("720p", 121, "model", text_encoder_resident=True)
    with pytest.raises(ValueError, match="offload must be"):
        peak("720p", 121, "disk")


def test_fp8_weights_are_counted_as_loaded() -> None:
    # The engine passes its transformer's weights as they are (placement.weight_bytes): the
    # full-size transformer, built on the meta device, converted as FRAMECAST_LINEAR=fp8 does.
    from framecast.engines.hunyuan.fp8 import convert_blocks_to_fp8
    from framecast.engines.hunyuan.placement import weight_bytes

    transformer = build_full_size_transformer("meta")
    assert weight_bytes(transformer) == COMPONENTS[0].bytes  # bf16: the table's
    convert_blocks_to_fp8(transformer, "fp8")
    fp8 = weight_bytes(transformer)
    saved = COMPONENTS[0].bytes - fp8
    assert round(saved / GiB, 1) == 5.1  # 15.5 -> 10.4 GiB
    for mode, holding in (("none", 5), ("model", 1)):  # the phases the transformer is on
        bf16_phases = peak("720p", 121, mode).phases
        fp8_phases = peak("720p", 121, mode, False, fp8).phases
        less = [a.name for a, b in zip(bf16_phases, fp8_phases, strict=True) if a.bytes > b.bytes]
        assert len(less) == holding and "denoise" in less
        assert all(a.bytes - b.bytes in (0, saved) for a, b in zip(bf16_phases, fp8_phases))
    # Block by block (group, sequential) the modulation layers, which FP8 leaves, dominate.
    assert peak("720p", 121, "group", False, fp8) == peak("720p", 121, "group")
    # A GPU between the two needs: refused in bf16, run with FP8 weights.
    between = (peak("720p", 121).required + peak("720p", 121, "none", False, fp8).required) // 2
    assert refusal(between, "720p", 121) is not None
    assert refusal(between, "720p", 121, transformer_bytes=fp8) is None


def test_text_encoder_headroom() -> None:
    headroom = text_encoder_headroom("720p", 241)
    assert round(headroom / GiB, 1) == 31.0
    assert round(text_encoder_headroom("720p", 121) / GiB, 1) == 16.4
    everything = sum(c.bytes for c in COMPONENTS)
    # The engine's test (keep_on_gpu): free after loading every model >= headroom; the same
    # as fits() with the text encoder resident.
    for total in (L40S, H100, 60 * GiB, 70 * GiB):
        free = total - memory.CUDA_CONTEXT - everything
        assert (free >= headroom) == fits(total, "720p", 241, "none", text_encoder_resident=True)
    # The worst bucket of 720p is as large as 16:9, within a tile's worth.
    worst = memory.worst_size("720p")
    assert worst in hunyuan15_i2v.BUCKETS.buckets(hunyuan15_i2v.BUCKET_BASE["720p"])
    assert text_encoder_headroom(worst) - headroom < 0.1 * GiB
