"""The fast path's FP8 linear layers, run for real on the CPU (torch._scaled_mm has a CPU kernel)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("diffusers")

import PIL.Image
import torch

from framecast.engines import EngineUnavailable
from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.fp8 import (
    E4M3,
    Float8Linear,
    Fp8Unsupported,
    check_fp8_supported,
    convert_blocks_to_fp8,
)
from framecast.engines.hunyuan.speedups import compile_blocks
from framecast.engines.hunyuan.tiny import build_tiny_pipeline
from framecast.engines.hunyuan.weights import resolve_model


def transformer_inputs(seed: int) -> dict[str, Any]:
    """One denoising call's inputs for the tiny transformer, drawn afresh from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(1, 4, 2, 6, 8, generator=g),
        timestep=torch.tensor([700.0]),
        guidance=torch.tensor([6000.0]),
        encoder_hidden_states=torch.randn(1, 9, 16, generator=g),
        encoder_attention_mask=torch.ones(1, 9, dtype=torch.bool),
        pooled_projections=torch.randn(1, 8, generator=g),
        return_dict=False,
    )


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_float8_linear_is_the_linear_within_e4m3_rounding(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(int(dtype.itemsize))
    linear = torch.nn.Linear(64, 48).to(dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(48, 64, generator=g))
        linear.bias.copy_(torch.randn(48, generator=g) * 5)  # large: a lost bias would show
    x = torch.randn(3, 7, 64, generator=g).to(dtype)
    fp8 = Float8Linear(linear)
    assert fp8.weight.dtype == E4M3 and fp8.weight.shape == (48, 64)
    with torch.no_grad():
        out, ref = fp8(x), linear(x)
    assert out.dtype == dtype and out.shape == (3, 7, 48)
    # e4m3 has 3 mantissa bits: a few percent per product, and never exactly the same.
    assert 1e-3 < rel_error(out, ref) < 0.06


def test_each_token_gets_its_own_scale() -> None:
    g = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(32, 32, bias=False)
    x = torch.randn(8, 32, generator=g)
    x[0] *= 1e4  # one outlier token
    fp8 = Float8Linear(linear)
    with torch.no_grad():
        out, ref = fp8(x), linear(x)
    # With one scale for the whole tensor, the quiet tokens would round to (almost) zero.
    assert rel_error(out[1:], ref[1:]) < 0.06


def test_conversion_covers_the_token_projections_and_leaves_the_rest() -> None:
    transformer = build_tiny_pipeline().transformer
    before = {n: type(m) for n, m in transformer.named_modules()}
    # Tiny model: 12 projections per double-stream block, 5 per single-stream block.
    assert convert_blocks_to_fp8(transformer) == 12 + 5
    after = {n: type(m) for n, m in transformer.named_modules()}
    changed = {n for n in before if before[n] is not after.get(n)}
    assert changed and all(after[n] is Float8Linear for n in changed)
    assert all(n.startswith(("transformer_blocks.", "single_transformer_blocks.")) for n in changed)
    assert not any(".norm" in n for n in changed)  # the modulation stays as it was
    assert "transformer_blocks.0.attn.to_out.0" in changed
    assert "single_transformer_blocks.0.proj_out" in changed
    # diffusers reads the model's dtype off its parameters: still the compute dtype.
    assert transformer.dtype == torch.float32


def test_converted_transformer_stays_close_to_the_exact_one() -> None:
    exact = build_tiny_pipeline().transformer
    fast = build_tiny_pipeline().transformer
    convert_blocks_to_fp8(fast)
    inputs = transformer_inputs(seed=3)
    with torch.inference_mode():
        out, ref = fast(**inputs)[0], exact(**inputs)[0]
    assert 1e-4 < rel_error(out, ref) < 0.05


def test_engine_on_the_fast_path_says_so_and_makes_a_nearby_video() -> None:
    source = resolve_model("tiny-random")
    exact = HunyuanEngine.load(source)
    fast = HunyuanEngine.load(source, linear="fp8")
    assert sum(isinstance(m, Float8Linear) for m in fast.pipe.transformer.modules()) == 17
    assert exact.metadata()["path"] == "exact" and exact.metadata()["linear"] == "float32"
    assert fast.metadata()["path"] == "fast"
    assert fast.metadata()["linear"] == "fp8 (e4m3, row-wise scales)"
    request = GenerationRequest(
        image=PIL.Image.new("RGB", (64, 48), (200, 80, 40)),
        prompt="waves roll in",
        seed=9,
        width=64,
        height=48,
        num_frames=5,
        options={"num_inference_steps": 3},
    )
    a = np.stack(list(exact.generate(request, NullHooks()))).astype(int)
    b = np.stack(list(fast.generate(request, NullHooks()))).astype(int)
    assert a.shape == b.shape == (5, 48, 64, 3)
    assert (a != b).any()
    assert float(np.abs(a - b).mean()) < 8  # levels of 255: nearby, not another video


def test_fp8_where_it_cannot_run_is_a_start_up_error() -> None:
    check_fp8_supported(torch.device("cpu"))  # the CPU has the kernel (slow, for tests)
    with pytest.raises(Fp8Unsupported, match="not supported on meta"):
        check_fp8_supported(torch.device("meta"))
    with pytest.raises(EngineUnavailable, match="FRAMECAST_LINEAR=fp8"):
        HunyuanEngine.load(resolve_model("tiny-random"), device="meta", linear="fp8")


def test_converted_blocks_compile_to_the_same_arithmetic() -> None:
    # FRAMECAST_COMPILE=on with FRAMECAST_LINEAR=fp8: inductor fuses the per-token casts.
    transformer = build_tiny_pipeline().transformer
    convert_blocks_to_fp8(transformer)
    inputs = transformer_inputs(seed=4)
    with torch.inference_mode():
        eager = transformer(**inputs)[0]
        assert compile_blocks(transformer) == 2
        compiled = transformer(**inputs)[0]
    assert rel_error(compiled, eager) < 1e-5
