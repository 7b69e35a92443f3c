"""The exact fast path on the tiny model: each change leaves the output as it was."""

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
from framecast.engines.hunyuan.flops import FULL_SIZE, step_flops
from framecast.engines.hunyuan.pipeline import Conditions, encode_conditions
from framecast.engines.hunyuan.speedups import (
    ATTENTION_BACKENDS,
    AttentionUnavailable,
    check_attention_backend,
    compile_blocks,
    install_unmasked_attention,
    trim_padding,
)
from framecast.engines.hunyuan.weights import resolve_model
from framecast.models.hunyuan_i2v import FPS

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def faithful() -> HunyuanEngine:
    return HunyuanEngine.load(resolve_model("tiny-random"), exact_speedups=False)


@pytest.fixture(scope="module")
def fast() -> HunyuanEngine:
    return HunyuanEngine.load(resolve_model("tiny-random"))


@pytest.fixture(scope="module")
def conditions(faithful: HunyuanEngine) -> Conditions:
    image = PIL.Image.new("RGB", (64, 48), (120, 30, 200))
    with torch.inference_mode():
        return encode_conditions(faithful.pipe, image, "a red fox runs", "blurry", CPU)


def forward(engine: HunyuanEngine, c: Conditions, negative: bool = False) -> torch.Tensor:
    embeds = c.negative_prompt_embeds if negative else c.prompt_embeds
    mask = c.negative_prompt_attention_mask if negative else c.prompt_attention_mask
    pooled = c.negative_pooled_prompt_embeds if negative else c.pooled_prompt_embeds
    with torch.inference_mode():
        out: torch.Tensor = engine.pipe.transformer(
            hidden_states=torch.randn(1, 4, 2, 6, 8, generator=torch.Generator().manual_seed(0)),
            timestep=torch.tensor([700.0]),
            guidance=torch.tensor([6000.0]),
            encoder_hidden_states=embeds,
            encoder_attention_mask=mask,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
    return out


def test_trim_cuts_only_the_padding(conditions: Conditions) -> None:
    trimmed, unpadded = trim_padding(conditions)
    assert unpadded
    kept = int(conditions.prompt_attention_mask.sum())
    assert trimmed.prompt_embeds.shape[1] == kept < conditions.prompt_embeds.shape[1]
    assert bool(trimmed.prompt_attention_mask.all())
    torch.testing.assert_close(
        trimmed.prompt_embeds, conditions.prompt_embeds[:, :kept], rtol=0, atol=0
    )
    assert trimmed.negative_prompt_embeds is not None
    assert conditions.negative_prompt_attention_mask is not None
    negative_kept = int(conditions.negative_prompt_attention_mask.sum())
    assert trimmed.negative_prompt_embeds.shape[1] == negative_kept


def test_trim_refuses_padding_that_is_not_at_the_end(conditions: Conditions) -> None:
    mask = conditions.prompt_attention_mask.clone()
    mask[0, 3] = 0
    holey = Conditions(conditions.prompt_embeds, conditions.pooled_prompt_embeds, mask)
    assert trim_padding(holey) == (holey, False)


def test_cutting_padding_changes_the_step_only_in_float_rounding(
    faithful: HunyuanEngine, conditions: Conditions
) -> None:
    trimmed, _ = trim_padding(conditions)
    for negative in (False, True):
        full, cut = forward(faithful, conditions, negative), forward(faithful, trimmed, negative)
        torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)


def test_no_mask_once_unpadded_is_bitwise_the_same(conditions: Conditions) -> None:
    engine = HunyuanEngine.load(resolve_model("tiny-random"), exact_speedups=False)
    trimmed, _ = trim_padding(conditions)
    masked = forward(engine, trimmed)
    processor = install_unmasked_attention(engine.pipe.transformer)
    processor.unpadded = True
    torch.testing.assert_close(forward(engine, trimmed), masked, rtol=0, atol=0)


def test_mask_is_kept_when_padding_remains(conditions: Conditions) -> None:
    engine = HunyuanEngine.load(resolve_model("tiny-random"), exact_speedups=False)
    padded = forward(engine, conditions)
    processor = install_unmasked_attention(engine.pipe.transformer)
    torch.testing.assert_close(forward(engine, conditions), padded, rtol=0, atol=0)
    processor.unpadded = True  # what the engine never does with padding: it changes the step
    assert not torch.allclose(forward(engine, conditions), padded, atol=1e-4)


def run(engine: HunyuanEngine, **options: Any) -> np.ndarray:
    image = PIL.Image.new("RGB", (100, 60), (20, 140, 90))
    req = GenerationRequest(
        image=image,
        prompt="clouds drift",
        seed=5,
        width=64,
        height=48,
        num_frames=5,
        fps=FPS,
        options={"num_inference_steps": 3, **options},
    )
    return np.stack(list(engine.generate(req, NullHooks())))


@pytest.mark.parametrize("options", [{}, {"cfg_scale": 2.5}])
def test_the_fast_engine_makes_the_same_video(
    faithful: HunyuanEngine, fast: HunyuanEngine, options: dict[str, Any]
) -> None:
    a, b = run(faithful, **options), run(fast, **options)
    # Float rounding may move a pixel across a rounding boundary, by one level at most.
    assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1
    assert float(np.mean(a != b)) < 0.01
    assert fast.metadata()["attention_mask"] == "dropped (no padding)"
    assert faithful.metadata()["attention_mask"] == "stock"


def test_regional_compile_covers_the_token_replace_blocks(conditions: Conditions) -> None:
    engine = HunyuanEngine.load(resolve_model("tiny-random"))
    transformer = engine.pipe.transformer
    names = {
        type(b).__name__
        for b in [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
    }
    assert names == {
        "HunyuanVideoTokenReplaceTransformerBlock",
        "HunyuanVideoTokenReplaceSingleTransformerBlock",
    }
    # Why diffusers' own regional compile is not enough: it does not list these classes.
    assert not names & set(transformer._repeated_blocks)
    trimmed, _ = trim_padding(conditions)
    engine._attention.unpadded = True  # type: ignore[union-attr]
    eager = forward(engine, trimmed)
    # aot_eager: which blocks are compiled and what they compute is dynamo's (inductor's C++
    # generation on a CPU takes tens of seconds and is not what a GPU runs; the engine compiled
    # by inductor is test_hunyuan_fp8.py's).
    torch._dynamo.reset()
    assert compile_blocks(transformer, backend="aot_eager") == 2
    assert all(
        b._compiled_call_impl is not None
        for b in [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
    )
    torch.testing.assert_close(forward(engine, trimmed), eager, rtol=1e-5, atol=1e-5)


def test_flop_model_matches_the_published_budget() -> None:
    f = step_flops(FULL_SIZE, num_frames=129, height=720, width=1280, text_tokens=0)
    assert f.video_tokens == 33 * 45 * 80 == 118_800
    assert f.linear == pytest.approx(1.6e15, rel=0.02)
    assert f.attention == pytest.approx(1.04e16, rel=0.02)
    assert f.attention / f.total == pytest.approx(0.87, abs=0.01)
    cfg = step_flops(FULL_SIZE, 129, 720, 1280, text_tokens=400, passes=2)
    one = step_flops(FULL_SIZE, 129, 720, 1280, text_tokens=400)
    assert cfg.total == 2 * one.total > 2 * f.total


def test_unmasked_calls_go_to_the_chosen_backend_and_masked_ones_do_not(
    conditions: Conditions,
) -> None:
    # cuDNN attention has no CPU kernel: a call that reaches it fails, one that does not runs.
    engine = HunyuanEngine.load(resolve_model("tiny-random"), exact_speedups=False)
    padded = forward(engine, conditions)
    processor = install_unmasked_attention(engine.pipe.transformer, "cudnn")
    torch.testing.assert_close(forward(engine, conditions), padded, rtol=0, atol=0)
    trimmed, processor.unpadded = trim_padding(conditions)
    with pytest.raises(RuntimeError):
        forward(engine, trimmed)


def test_a_chosen_backend_makes_the_same_video(fast: HunyuanEngine) -> None:
    # PyTorch's flash kernel also exists for the CPU: the one backend choice runnable here.
    flash = HunyuanEngine.load(resolve_model("tiny-random"), attention="flash")
    assert flash.metadata()["attention"] == "flash" and flash.metadata()["path"] == "exact"
    a, b = run(fast), run(flash)
    assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1
    assert float(np.mean(a != b)) < 0.01


@pytest.mark.parametrize("choice", ["cudnn", "flash-attn", "flash-attn-3", "sage"])
def test_a_backend_that_cannot_run_here_fails_at_start_and_says_what_to_do(choice: str) -> None:
    with pytest.raises(AttentionUnavailable) as caught:
        check_attention_backend(choice, CPU, torch.float32)
    message = str(caught.value)
    assert message.startswith(f"FRAMECAST_ATTENTION={choice} ")
    assert ("is not installed" in message) == (choice != "cudnn")  # none of those is, here
    assert ATTENTION_BACKENDS[choice][1] in message and "FRAMECAST_ATTENTION=auto" in message
    assert len(message) < 500
    with pytest.raises(EngineUnavailable, match=f"FRAMECAST_ATTENTION={choice} "):
        HunyuanEngine.load(resolve_model("tiny-random"), attention=choice)


def test_only_quantised_attention_is_labelled_fast(fast: HunyuanEngine) -> None:
    assert fast.metadata()["attention"] == "auto" and fast.metadata()["path"] == "exact"
    check_attention_backend("auto", CPU, torch.float32)  # nothing to check
    labelled = HunyuanEngine(fast.pipe, model="m", placement=fast.placement, attention="sage")
    assert labelled.metadata()["path"] == "fast"
    with pytest.raises(ValueError, match="needs exact_speedups"):
        HunyuanEngine(
            fast.pipe, model="m", placement=fast.placement, attention="cudnn", exact_speedups=False
        )
