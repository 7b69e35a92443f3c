"""HunyuanVideo 1.5's speed-ups beyond the exact path, on its tiny model: step caching, FP8
linears and regional compilation, the code HunyuanVideo-I2V runs (engines/hunyuan/cache.py,
fp8.py, speedups.py), given 1.5's blocks by its spec (engines/hunyuan/blocks.py).

Here what is particular to 1.5: its spec, its engine options, its layers and weights. The step
cache's behaviour is tested on both models at once (tests/unit/test_hunyuan_cache.py). One test
compiles (tens of seconds on a CPU); the FP8 ones run eagerly, the compile fp8 asks for stubbed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch
from diffusers.hooks._helpers import TransformerBlockRegistry
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15TransformerBlock,
)

from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.hunyuan import tiny as v1_tiny
from framecast.engines.hunyuan.blocks import HUNYUAN_15, HUNYUAN_I2V, spec_of
from framecast.engines.hunyuan.cache import register_blocks
from framecast.engines.hunyuan.fp8 import (
    Float8Linear,
    Float8WeightLinear,
    convert_blocks_to_fp8,
)
from framecast.engines.hunyuan15.engine import Hunyuan15Engine
from framecast.engines.hunyuan15.fullsize import build_full_size_transformer
from framecast.engines.hunyuan15.options import Options
from framecast.engines.hunyuan15.tiny import build_tiny_pipeline
from framecast.engines.hunyuan15.weights import resolve_model
from framecast.errors import InputError
from framecast.models.base import FIRST_BLOCK_CACHE_THRESHOLD
from framecast.models.hunyuan15_i2v import FPS

from .tiny_inputs import gradient_image, transformer15_inputs

STEPS = 4
FBC = {"step_cache": "first_block"}
TINY = "tiny-random"


@pytest.fixture(scope="module")
def engine() -> Hunyuan15Engine:
    return Hunyuan15Engine.load(resolve_model(TINY), device="cpu")


def request(**options: Any) -> GenerationRequest:
    return GenerationRequest(
        image=gradient_image(),
        prompt='a red fox runs past a sign that says "open"',
        seed=5,
        width=80,
        height=48,
        num_frames=5,
        fps=FPS,
        options={"num_inference_steps": STEPS, **options},
    )


def run(engine: Hunyuan15Engine, req: GenerationRequest, hooks: Any = None) -> np.ndarray:
    return np.stack(list(engine.generate(req, hooks or NullHooks())))


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm())


def weights_gib(module: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**30


# -- what the shared code is told of 1.5 ------------------------------------------------------


def test_each_spec_names_the_blocks_its_model_is_made_of() -> None:
    v15 = build_tiny_pipeline().transformer
    v1 = v1_tiny.build_tiny_pipeline().transformer
    assert spec_of(v15) is HUNYUAN_15 and spec_of(v1) is HUNYUAN_I2V
    for spec, transformer in ((HUNYUAN_15, v15), (HUNYUAN_I2V, v1)):
        blocks = spec.blocks(transformer)
        assert {type(b) for b in blocks} == set(spec.block_classes)
        # Every repeated block, and nothing else that repeats: the lists are all there is.
        lists = [n for n, m in transformer.named_children() if isinstance(m, torch.nn.ModuleList)]
        assert set(spec.block_lists) == set(lists)
    with pytest.raises(TypeError, match="no Hunyuan transformer spec for Linear"):
        spec_of(torch.nn.Linear(2, 2))


def test_the_15_block_is_registered_for_diffusers_cache_hooks_and_the_i2v_ones_kept() -> None:
    before = {c: TransformerBlockRegistry.get(c) for c in HUNYUAN_I2V.block_classes}
    register_blocks(HUNYUAN_15)
    register_blocks(HUNYUAN_I2V)
    metadata = TransformerBlockRegistry.get(HunyuanVideo15TransformerBlock)
    # HunyuanVideo15TransformerBlock.forward returns (hidden_states, encoder_hidden_states).
    assert (metadata.return_hidden_states_index, metadata.return_encoder_hidden_states_index) == (
        0,
        1,
    )
    assert {c: TransformerBlockRegistry.get(c) for c in HUNYUAN_I2V.block_classes} == before


# -- step caching: the engine's options ------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [({"step_cache_threshold": 0.1}, "step_cache_threshold"), ({"step_cache": "x"}, "step_cache")],
)
def test_engine_options_refuse_a_cache_they_cannot_run(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as caught:
        Options.of(request(**options))
    assert caught.value.details == {"field": field}


def test_engine_options_default_the_threshold_as_the_input_does() -> None:
    # A request built without an input (tests, benchmarks) gets the input's default.
    assert Options.of(request(**FBC)).step_cache_threshold == FIRST_BLOCK_CACHE_THRESHOLD
    assert Options.of(request()).step_cache_threshold is None


# -- FP8 linears ------------------------------------------------------------------------------


def test_conversion_covers_the_blocks_projections_and_leaves_the_rest() -> None:
    transformer = build_tiny_pipeline().transformer
    before = {n: type(m) for n, m in transformer.named_modules()}
    # Per block: q, k, v and out of both streams, and both streams' two MLP layers.
    assert convert_blocks_to_fp8(transformer, "fp8") == 12 * 2
    after = {n: type(m) for n, m in transformer.named_modules()}
    changed = {n for n in before if before[n] is not after.get(n)}
    assert changed and all(after[n] is Float8Linear for n in changed)
    assert all(n.startswith("transformer_blocks.") for n in changed)
    assert not any(".norm" in n for n in changed)  # the modulation stays as it was
    assert {"transformer_blocks.1.attn.to_add_out", "transformer_blocks.1.ff_context.net.2"} <= (
        changed
    )
    assert transformer.dtype == torch.float32

    transformer = build_tiny_pipeline().transformer
    # The modulation too (norm1, norm1_context), as the official --use-fp8.
    assert convert_blocks_to_fp8(transformer, "fp8-weight") == 14 * 2
    converted = {n for n, m in transformer.named_modules() if isinstance(m, Float8WeightLinear)}
    assert "transformer_blocks.0.norm1_context.linear" in converted
    assert not any(n.startswith(("context_embedder", "proj_out")) for n in converted)


def test_full_size_weights_in_each_mode() -> None:
    # The figures the docs give (README, fp8.py), from the converter itself run on the published
    # architecture, built on the meta device (no memory, < 1 s).
    transformer = build_full_size_transformer("meta")
    assert sum(p.numel() for p in transformer.parameters()) == 8_326_608_160
    assert round(weights_gib(transformer), 1) == 15.5
    convert_blocks_to_fp8(transformer, "fp8")
    fp8 = [m for m in transformer.modules() if isinstance(m, Float8Linear)]
    assert sum(m.weight.numel() for m in fp8) == 5_435_817_984
    assert round(weights_gib(transformer), 1) == 10.4  # the modulation is a third, in bf16

    transformer = build_full_size_transformer("meta")
    convert_blocks_to_fp8(transformer, "fp8-weight")
    weight_only = [m for m in transformer.modules() if isinstance(m, Float8WeightLinear)]
    assert sum(m.weight.numel() for m in weight_only) == 8_153_726_976
    assert round(weights_gib(transformer), 1) == 7.9


@pytest.mark.parametrize("linear", ["fp8", "fp8-weight"])
def test_converted_transformer_stays_close_to_the_exact_one(linear: str) -> None:
    exact = build_tiny_pipeline().transformer
    fast = build_tiny_pipeline().transformer
    convert_blocks_to_fp8(fast, linear)
    inputs = transformer15_inputs(exact)
    with torch.inference_mode():
        out, ref = fast(**inputs)[0], exact(**inputs)[0]
    assert 1e-4 < rel_error(out, ref) < 0.05


def test_fp8_weights_say_so_and_make_a_nearby_video(engine: Hunyuan15Engine) -> None:
    small = Hunyuan15Engine.load(resolve_model(TINY), device="cpu", linear="fp8-weight")
    assert sum(isinstance(m, Float8WeightLinear) for m in small.pipe.transformer.modules()) == 28
    meta = small.metadata()
    assert meta["path"] == "fast" and meta["compiled"] is False  # memory, not speed
    assert meta["linear"] == "fp8-weight (e4m3 weights, row-wise scales; float32 products)"
    assert engine.metadata()["linear"] == "float32" and engine.metadata()["path"] == "exact"
    a = run(engine, request()).astype(int)
    b = run(small, request()).astype(int)
    assert float(np.abs(a - b).mean()) < 8  # levels of 255: nearby, not another video


def test_fp8_asks_for_compiled_blocks_and_makes_a_nearby_video(
    engine: Hunyuan15Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Eager here (the compile is stubbed): the test below runs fp8 compiled.
    compiled: list[bool] = []
    monkeypatch.setattr(Hunyuan15Engine, "compile", lambda self: compiled.append(True))
    with caplog.at_level(logging.INFO, logger="framecast.engines.hunyuan15"):
        fast = Hunyuan15Engine.load(resolve_model(TINY), device="cpu", linear="fp8")
    assert compiled == [True]
    assert "FRAMECAST_LINEAR=fp8 compiles the transformer blocks" in caplog.text
    assert sum(isinstance(m, Float8Linear) for m in fast.pipe.transformer.modules()) == 24
    assert fast.metadata()["linear"] == "fp8 (e4m3, row-wise scales)"
    assert fast.metadata()["path"] == "fast"
    a = run(engine, request()).astype(int)
    b = run(fast, request()).astype(int)
    assert float(np.abs(a - b).mean()) < 8


# -- compile ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_blocks_make_the_same_video_within_rounding(engine: Hunyuan15Engine) -> None:
    # The one test that compiles (tens of seconds on a CPU): FRAMECAST_COMPILE=on with fp8
    # linears, the fast path as it runs. One pass a step (guidance 1), so one graph.
    torch._dynamo.reset()  # graphs other tests compiled for the block class count to a limit
    fast = Hunyuan15Engine.load(resolve_model(TINY), device="cpu", compile_mode="on", linear="fp8")
    blocks = fast.pipe.transformer.transformer_blocks
    assert fast.metadata()["compiled"] is True
    assert all(b._compiled_call_impl is not None for b in blocks)
    req = request(guidance_scale=1.0, num_inference_steps=2)
    compiled = run(fast, req).astype(int)
    with torch.compiler.set_stance("force_eager"):
        eager = run(fast, req).astype(int)
    # Compiled kernels round differently, by a level at most.
    assert int(np.abs(compiled - eager).max()) <= 1
    exact = run(engine, req).astype(int)
    assert float(np.abs(compiled - exact).mean()) < 8
