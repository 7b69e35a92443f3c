"""The fast path's FP8 linear layers, run for real on the CPU (torch._scaled_mm has a CPU kernel).

Compiling on the CPU is slow (tens of seconds the first time): one test compiles the whole tiny
transformer, through the engine, and checks everything that needs compiled blocks on that one
graph; the others compile a single layer.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest

pytest.importorskip("diffusers")

import PIL.Image
import torch
from torch._inductor.utils import run_and_get_code

from framecast.engines import EngineUnavailable
from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.fp8 import (
    E4M3,
    E4M3_MAX,
    Float8Linear,
    Float8WeightLinear,
    Fp8Unsupported,
    _quantize_rows,
    check_fp8_supported,
    convert_blocks_to_fp8,
)
from framecast.engines.hunyuan.fullsize import build_full_size_pipeline
from framecast.engines.hunyuan.tiny import build_tiny_pipeline
from framecast.engines.hunyuan.weights import resolve_model
from framecast.models.hunyuan_i2v import FPS

from .tiny_inputs import transformer_inputs

REQUEST = GenerationRequest(
    image=PIL.Image.new("RGB", (64, 48), (200, 80, 40)),
    prompt="waves roll in",
    seed=9,
    width=64,
    height=48,
    num_frames=5,
    fps=FPS,
    options={"num_inference_steps": 3},
)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm())


def weights_gib(module: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**30


def plain_quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook per-row cast (and fp8.py's until it was made cheaper)."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / E4M3_MAX
    return (x / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_cheaper_quantization_is_bitwise_the_plain_one(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(5)
    # Rows from 1e-30 to 1e30 (bf16 and float32 both reach that far), and rows at the edges.
    x = torch.randn(512, 1024, generator=g) * torch.logspace(-30, 30, 512).unsqueeze(1)
    x = x.to(dtype)
    x[0] = 0
    x[1] = torch.finfo(dtype).tiny / 8  # subnormal
    x[2, 0] = torch.finfo(dtype).max
    x[3, :3] = torch.tensor([math.inf, -1.0, 2.0])
    x[4, 5] = math.nan
    quantized, scale = _quantize_rows(x)
    plain, plain_scale = plain_quantize_rows(x)
    assert torch.equal(quantized.view(torch.uint8), plain.view(torch.uint8))
    assert torch.equal(scale.view(torch.int32), plain_scale.view(torch.int32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("module_type", [Float8Linear, Float8WeightLinear])
def test_float8_linear_is_the_linear_within_e4m3_rounding(
    dtype: torch.dtype, module_type: type[Float8Linear | Float8WeightLinear]
) -> None:
    g = torch.Generator().manual_seed(int(dtype.itemsize))
    linear = torch.nn.Linear(64, 48).to(dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(48, 64, generator=g))
        linear.bias.copy_(torch.randn(48, generator=g) * 5)  # large: a lost bias would show
    x = torch.randn(3, 7, 64, generator=g).to(dtype)
    fp8 = module_type(linear)
    assert fp8.weight.dtype == E4M3 and fp8.weight.shape == (48, 64)
    assert not fp8.weight.requires_grad  # a frozen parameter: offload hooks move it
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


def test_weight_only_matches_the_dequantized_weight_exactly() -> None:
    # fp8-weight's products are ordinary ones: with the e4m3 weight times its scales
    # written out, the layer is nn.Linear bit for bit.
    g = torch.Generator().manual_seed(2)
    linear = torch.nn.Linear(40, 24)  # any shape: no FP8 product, so no multiple of 16
    x = torch.randn(5, 40, generator=g)
    fp8 = Float8WeightLinear(linear)
    with torch.no_grad():
        linear.weight.copy_(fp8.weight.float() * fp8.weight_scale)
        assert torch.equal(fp8(x), linear(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("module_type", [Float8Linear, Float8WeightLinear])
def test_peft_adapts_an_fp8_layer_in_the_compute_dtype_and_never_merges_into_it(
    dtype: torch.dtype, module_type: type[Float8Linear | Float8WeightLinear]
) -> None:
    # How LoRAs run on FP8 layers (loras.py): PEFT's own lora.Linear around ours, its adapters
    # in the compute dtype (PEFT reads compute_dtype), its delta added to our output.
    peft = pytest.importorskip("peft")
    g = torch.Generator().manual_seed(7)
    fp8 = module_type(torch.nn.Linear(64, 48).to(dtype))
    model = torch.nn.Sequential(fp8)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"], init_lora_weights=False)
    peft.inject_adapter_in_model(config, model, adapter_name="a")
    lora: Any = model[0]
    assert lora.get_base_layer() is fp8
    a, b = lora.lora_A["a"].weight, lora.lora_B["a"].weight
    assert a.dtype == b.dtype == dtype  # not e4m3, as PEFT would make them from weight.dtype
    x = torch.randn(3, 7, 64, generator=g).to(dtype)
    with torch.no_grad():
        delta = torch.nn.functional.linear(torch.nn.functional.linear(x, a), b) * 2.0
        assert torch.equal(model(x), fp8(x) + delta)
    # A LoRA merged into e4m3 rows would ignore their scales: torch refuses, nothing changes.
    weight = fp8.weight.detach().clone()
    for safe in (False, True):
        with pytest.raises((RuntimeError, NotImplementedError), match="Float8"):
            lora.merge(safe_merge=safe)
    assert torch.equal(fp8.weight.view(torch.uint8), weight.view(torch.uint8))
    assert not lora.merged


def test_conversion_covers_the_token_projections_and_leaves_the_rest() -> None:
    transformer = build_tiny_pipeline().transformer
    before = {n: type(m) for n, m in transformer.named_modules()}
    # Tiny model: 12 projections per double-stream block, 5 per single-stream block.
    assert convert_blocks_to_fp8(transformer, "fp8") == 12 + 5
    after = {n: type(m) for n, m in transformer.named_modules()}
    changed = {n for n in before if before[n] is not after.get(n)}
    assert changed and all(after[n] is Float8Linear for n in changed)
    assert all(n.startswith(("transformer_blocks.", "single_transformer_blocks.")) for n in changed)
    assert not any(".norm" in n for n in changed)  # the modulation stays as it was
    assert "transformer_blocks.0.attn.to_out.0" in changed
    assert "single_transformer_blocks.0.proj_out" in changed
    # diffusers reads the model's dtype off its parameters: still the compute dtype.
    assert transformer.dtype == torch.float32


def test_weight_only_conversion_covers_every_linear_layer_of_the_blocks() -> None:
    transformer = build_tiny_pipeline().transformer
    # The modulation layers too (as the official --use-fp8): they hold a quarter of the weights.
    assert convert_blocks_to_fp8(transformer, "fp8-weight") == 12 + 5 + 2 + 1
    converted = {n for n, m in transformer.named_modules() if isinstance(m, Float8WeightLinear)}
    assert "transformer_blocks.0.norm1.linear" in converted
    assert "single_transformer_blocks.0.norm.linear" in converted
    assert not any(isinstance(m, Float8Linear) for m in transformer.modules())
    assert transformer.dtype == torch.float32
    with pytest.raises(ValueError, match="fp8, fp8-weight"):
        convert_blocks_to_fp8(transformer, "int8")


def test_full_size_weights_in_each_mode() -> None:
    # The figures the docs give (README, docs/performance.md, settings), from the converter
    # itself run on the published architecture, built on the meta device (no memory, < 1 s).
    transformer = build_full_size_pipeline("meta").transformer
    assert sum(p.numel() for p in transformer.parameters()) == 12_821_012_544
    assert round(weights_gib(transformer), 1) == 23.9
    convert_blocks_to_fp8(transformer, "fp8")
    fp8 = [m for m in transformer.modules() if isinstance(m, Float8Linear)]
    assert sum(m.weight.numel() for m in fp8) == 9_059_696_640  # "9.06B of the 12.82B"
    assert round(weights_gib(transformer), 1) == 15.4  # not half: the rest stays bf16
    scales = sum(b.numel() * b.element_size() for b in transformer.buffers())
    assert scales < 10 * 2**20  # float32, one per row: 8 MiB

    transformer = build_full_size_pipeline("meta").transformer
    convert_blocks_to_fp8(transformer, "fp8-weight")
    weight_only = [m for m in transformer.modules() if isinstance(m, Float8WeightLinear)]
    assert sum(m.weight.numel() for m in weight_only) == 12_457_082_880
    assert round(weights_gib(transformer), 1) == 12.3


@pytest.mark.parametrize("linear", ["fp8", "fp8-weight"])
def test_converted_transformer_stays_close_to_the_exact_one(linear: str) -> None:
    exact = build_tiny_pipeline().transformer
    fast = build_tiny_pipeline().transformer
    convert_blocks_to_fp8(fast, linear)
    inputs = transformer_inputs(seed=3)
    with torch.inference_mode():
        out, ref = fast(**inputs)[0], exact(**inputs)[0]
    assert 1e-4 < rel_error(out, ref) < 0.05


@pytest.mark.slow
def test_a_compiled_float8_linear_is_one_fused_cast_and_bitwise_eager() -> None:
    # What FRAMECAST_LINEAR=fp8 compiles for: the per-token cast (largest magnitude, divide,
    # round to e4m3) becomes one kernel, and the product is the same _scaled_mm, so nothing
    # changes but the memory traffic. bf16 only: with it the bias joins the product (the
    # float32 layer adds it in a second kernel). On a GPU, Triton divides to within 2 ulp
    # rather than exactly, so there a few e4m3 values in a million may differ.
    g = torch.Generator().manual_seed(6)
    layer = Float8Linear(torch.nn.Linear(64, 48).to(torch.bfloat16))
    x = torch.randn(3, 7, 64, generator=g).to(torch.bfloat16)
    with torch.inference_mode():
        out, (code,) = run_and_get_code(torch.compile(layer), x)
        assert torch.equal(out, layer(x))
    assert code.count("async_compile.cpp_pybinding(") == 1  # one generated kernel
    assert code.count("extern_kernels._scaled_mm(") == 1


def compiled_block_kernels(linear: str, kind: str) -> tuple[int, int]:
    """(generated kernels, _scaled_mm calls) of one compiled bf16 block of the tiny
    transformer, ``kind`` "double" or "single", on the inputs the transformer gives it."""
    transformer = build_tiny_pipeline().transformer.to(torch.bfloat16)
    if linear == "fp8":
        convert_blocks_to_fp8(transformer)
    block = {
        "double": transformer.transformer_blocks[0],
        "single": transformer.single_transformer_blocks[0],
    }[kind]
    seen: dict[str, Any] = {}

    def record(_module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        seen.update(args=args, kwargs=kwargs)

    hook = block.register_forward_pre_hook(record, with_kwargs=True)
    inputs = {
        k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() else v
        for k, v in transformer_inputs().items()
    }
    torch._dynamo.reset()  # graphs other tests compiled for the block classes count to a limit
    with torch.inference_mode():
        transformer(**inputs)
        hook.remove()
        _, codes = run_and_get_code(torch.compile(block), *seen["args"], **seen["kwargs"])
    code = "\n".join(codes)
    return code.count("async_compile.cpp_pybinding("), code.count("extern_kernels._scaled_mm(")


@pytest.mark.slow
def test_compiled_fp8_casts_join_the_kernels_a_block_runs_anyway() -> None:
    # The fast path pays only if the per-token casts cost no pass of their own: compiled,
    # each is computed in a kernel the bf16 block has anyway (the layer norm with its
    # modulation, the concatenation before proj_out, the GELU). Counted in the CPU's generated
    # code; a GPU's (Triton) may fuse otherwise, and its step time is the benchmark's.
    bf16, fp8 = compiled_block_kernels("bf16", "single"), compiled_block_kernels("fp8", "single")
    assert bf16[1] == 0 and fp8[1] == 5  # to_q, to_k, to_v, proj_mlp, proj_out
    assert fp8[0] == bf16[0]  # the single-stream blocks: 40 of the full model's 60
    bf16, fp8 = compiled_block_kernels("bf16", "double"), compiled_block_kernels("fp8", "double")
    assert bf16[1] == 0 and fp8[1] == 12
    # Two more: the casts of the attention's output (one kernel for both streams; attention
    # is a library call, nothing to join), and the two streams' second layer norms, one
    # kernel in bf16, split by the products each now waits for.
    assert fp8[0] <= bf16[0] + 2


@pytest.mark.slow
def test_engine_on_the_fast_path_compiles_says_so_and_makes_a_nearby_video(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The one test that compiles the whole tiny transformer (tens of seconds on a CPU): the
    # engine compiles it for fp8, and every compiled-against-eager check runs on that graph,
    # eager by torch.compiler.set_stance("force_eager").
    source = resolve_model("tiny-random")
    exact = HunyuanEngine.load(source)
    with caplog.at_level(logging.INFO, logger="framecast.engines.hunyuan"):
        fast = HunyuanEngine.load(source, linear="fp8")  # FRAMECAST_COMPILE left at off
    assert "FRAMECAST_LINEAR=fp8 compiles the transformer blocks" in caplog.text
    assert sum(isinstance(m, Float8Linear) for m in fast.pipe.transformer.modules()) == 17
    assert exact.metadata()["path"] == "exact" and exact.metadata()["linear"] == "float32"
    assert exact.metadata()["compiled"] is False
    assert fast.metadata()["path"] == "fast" and fast.metadata()["compiled"] is True
    assert fast.metadata()["linear"] == "fp8 (e4m3, row-wise scales)"

    calls: list[dict[str, Any]] = []

    def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        calls.append({k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})

    hook = fast.pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    a = np.stack(list(exact.generate(REQUEST, NullHooks()))).astype(int)
    b = np.stack(list(fast.generate(REQUEST, NullHooks()))).astype(int)  # compiles
    hook.remove()
    with torch.compiler.set_stance("force_eager"):
        b_eager = np.stack(list(fast.generate(REQUEST, NullHooks()))).astype(int)
    assert a.shape == b.shape == (5, 48, 64, 3)
    assert (a != b).any()
    assert float(np.abs(a - b).mean()) < 8  # levels of 255: nearby, not another video
    assert int(np.abs(b - b_eager).max()) <= 1

    # The whole transformer on one denoising call's inputs. Not bitwise: inductor's fused
    # layer norm, RMS norm and GELU round differently from eager's in the last float32 bit
    # (the FP8 layers alone are bitwise, above), and such a bit could move an activation to
    # the neighbouring e4m3 value. Measured 1.3e-7; the frames came out identical.
    with torch.inference_mode():
        compiled = fast.pipe.transformer(**calls[0])[0]
        with torch.compiler.set_stance("force_eager"):
            eager = fast.pipe.transformer(**calls[0])[0]
    assert rel_error(compiled, eager) < 1e-5


def test_engine_with_fp8_weights_says_so_and_makes_a_nearby_video() -> None:
    source = resolve_model("tiny-random")
    exact = HunyuanEngine.load(source)
    small = HunyuanEngine.load(source, linear="fp8-weight")
    assert sum(isinstance(m, Float8WeightLinear) for m in small.pipe.transformer.modules()) == 20
    assert small.metadata()["path"] == "fast" and not small.exact
    assert small.metadata()["compiled"] is False  # memory, not speed: nothing to fuse
    assert small.metadata()["linear"] == (
        "fp8-weight (e4m3 weights, row-wise scales; float32 products)"
    )
    a = np.stack(list(exact.generate(REQUEST, NullHooks()))).astype(int)
    b = np.stack(list(small.generate(REQUEST, NullHooks()))).astype(int)
    assert (a != b).any()
    assert float(np.abs(a - b).mean()) < 8


def test_fp8_where_it_cannot_run_is_a_start_up_error(monkeypatch: pytest.MonkeyPatch) -> None:
    check_fp8_supported(torch.device("cpu"))  # the CPU has the kernel (slow, for tests)
    check_fp8_supported(torch.device("cpu"), "fp8-weight")
    for linear in ("fp8", "fp8-weight"):
        with pytest.raises(Fp8Unsupported, match=f"FRAMECAST_LINEAR={linear} is not supported"):
            check_fp8_supported(torch.device("meta"), linear)
        with pytest.raises(EngineUnavailable, match=f"FRAMECAST_LINEAR={linear}"):
            HunyuanEngine.load(resolve_model("tiny-random"), device="meta", linear=linear)
    # A CUDA GPU without FP8 tensor cores (an A100 is 8.0): fp8 is refused, naming
    # fp8-weight, which needs no FP8 products and so runs on any CUDA GPU.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _device: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _device: "NVIDIA A100")
    with pytest.raises(Fp8Unsupported, match=r"is 8\.0\. Use FRAMECAST_LINEAR=fp8-weight"):
        check_fp8_supported(torch.device("cuda"), "fp8")
    check_fp8_supported(torch.device("cuda"), "fp8-weight")
