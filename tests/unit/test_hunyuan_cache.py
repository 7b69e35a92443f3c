"""Step caching (First Block Cache) on the tiny model: off is the exact path to the bit, on it
skips passes and says so, true CFG keeps a state per branch, nothing leaks between requests.

Skip counts here say only that the mechanism works: the tiny model has random weights, so how
often it skips says nothing about the real model's speed-up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from framecast.api.errors import describe_validation_errors
from framecast.models.hunyuan_i2v import FIRST_BLOCK_CACHE_THRESHOLD, FPS, ImageToVideoInput

pytest.importorskip("diffusers")

import PIL.Image
import torch

from framecast.engines.base import Cancelled, GenerationRequest, NullHooks
from framecast.engines.hunyuan.cache import _head_hook
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.weights import resolve_model

STEPS = 4
FBC = {"step_cache": "first_block"}


@pytest.fixture(scope="module")
def engine() -> HunyuanEngine:
    return HunyuanEngine.load(resolve_model("tiny-random"))


def request(**options: Any) -> GenerationRequest:
    return GenerationRequest(
        image=PIL.Image.new("RGB", (100, 60), (20, 140, 90)),
        prompt="clouds drift over the hills",
        seed=5,
        width=64,
        height=48,
        num_frames=5,
        fps=FPS,
        options={"num_inference_steps": STEPS, **options},
    )


def run(engine: HunyuanEngine, req: GenerationRequest, hooks: Any = None) -> np.ndarray:
    return np.stack(list(engine.generate(req, hooks or NullHooks())))


def result_metadata(engine: HunyuanEngine, req: GenerationRequest) -> dict[str, Any]:
    """What the worker records with a result."""
    return {**engine.metadata(), **engine.describe(req)}


def assert_no_cache_hooks(engine: HunyuanEngine) -> None:
    transformer = engine.pipe.transformer
    assert not transformer.is_cache_enabled
    assert not transformer._forward_pre_hooks and not transformer._forward_hooks
    for block in [*transformer.transformer_blocks, *transformer.single_transformer_blocks]:
        assert not getattr(block, "_diffusers_hook", None) or not block._diffusers_hook.hooks


# -- the request fields ----------------------------------------------------------------------


def test_the_cache_is_off_unless_asked_and_has_the_published_default_threshold() -> None:
    base = {"prompt": "x", "image_url": "https://example.com/a.jpg"}
    off = ImageToVideoInput.model_validate(base).model_options()
    assert off["step_cache"] is None and off["step_cache_threshold"] is None
    on = ImageToVideoInput.model_validate({**base, **FBC}).model_options()
    assert on["step_cache"] == "first_block"
    assert on["step_cache_threshold"] == FIRST_BLOCK_CACHE_THRESHOLD == 0.06
    given = ImageToVideoInput.model_validate({**base, **FBC, "step_cache_threshold": 0.2})
    assert given.model_options()["step_cache_threshold"] == 0.2


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"step_cache_threshold": 0.1}, "only has an effect with a step cache"),
        ({**FBC, "step_cache_threshold": 0}, "greater than 0"),
        ({**FBC, "step_cache_threshold": 1.5}, "less than or equal to 1"),
        ({"step_cache": "teacache"}, "step_cache must be one of 'first_block'"),
    ],
)
def test_bad_cache_fields_are_a_clear_422(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ImageToVideoInput.model_validate({"prompt": "x", "image_url": "https://e.com/a", **fields})
    messages = [
        d["message"] for d in describe_validation_errors([dict(e) for e in caught.value.errors()])
    ]
    assert any(says in m for m in messages), messages


# -- the engine ------------------------------------------------------------------------------


def test_off_is_the_exact_path_bit_for_bit_even_right_after_a_cached_request(
    engine: HunyuanEngine,
) -> None:
    exact = run(engine, request())
    run(engine, request(**FBC, step_cache_threshold=0.5))
    assert_no_cache_hooks(engine)
    np.testing.assert_array_equal(run(engine, request(step_cache=None)), exact)
    meta = result_metadata(engine, request())
    assert meta["path"] == "exact"
    assert not {"step_cache", "step_cache_threshold", "transformer_passes"} & meta.keys()


def test_a_high_threshold_skips_passes_and_the_result_says_so(engine: HunyuanEngine) -> None:
    exact = run(engine, request())
    req = request(**FBC, step_cache_threshold=0.5)
    cached = run(engine, req)
    meta = result_metadata(engine, req)
    passes = meta["transformer_passes"]
    assert passes["computed"] + passes["skipped"] == STEPS
    assert passes["computed"] >= 1 and passes["skipped"] >= 1  # the first pass always runs
    assert not np.array_equal(cached, exact)
    assert meta["path"] == "fast"
    assert meta["step_cache"] == "first_block" and meta["step_cache_threshold"] == 0.5
    # Counts belong to the request that ran: none for one that has not.
    assert "transformer_passes" not in engine.describe(request(**FBC))


def test_a_cache_that_skips_nothing_changes_nothing(engine: HunyuanEngine) -> None:
    # The hooks wrap the blocks without changing their arithmetic: only skipping does.
    for cfg in (1.0, 2.5):
        exact = run(engine, request(cfg_scale=cfg))
        req = request(**FBC, step_cache_threshold=1e-6, cfg_scale=cfg)
        np.testing.assert_array_equal(run(engine, req), exact)
        assert engine.describe(req)["transformer_passes"]["skipped"] == 0


def test_true_cfg_keeps_a_cache_state_per_branch(engine: HunyuanEngine) -> None:
    transformer = engine.pipe.transformer
    seen: list[tuple[str, torch.Tensor]] = []

    def record(_block: Any, args: Any) -> None:
        # diffusers calls the blocks with positional arguments: (hidden, encoder_hidden, ...).
        seen.append((_head_hook(transformer).state_manager.context.name, args[1]))

    handle = transformer.transformer_blocks[0].register_forward_pre_hook(record)
    try:
        req = request(**FBC, step_cache_threshold=1.0, cfg_scale=2.5)
        run(engine, req)
    finally:
        handle.remove()
    assert [name for name, _ in seen] == ["cond", "uncond"] * STEPS
    # Each branch is told by its own text: the negative prompt's embeddings are the uncond's.
    cond = {tuple(t.shape) for name, t in seen if name == "cond"}
    uncond = {tuple(t.shape) for name, t in seen if name == "uncond"}
    assert len(cond) == len(uncond) == 1 and cond != uncond
    # At the highest threshold everything that can be skipped is: only the first pass of each
    # branch runs. Were the state shared, the uncond pass would reuse the cond one's at step 0.
    assert engine.describe(req)["transformer_passes"] == {
        "computed": 2,
        "skipped": 2 * STEPS - 2,
    }


class CancelAt:
    def __init__(self, step: int) -> None:
        self.step = step
        self.done = 0

    def progress(self, step: int, total: int, phase: str) -> None:
        if phase == "denoising":
            self.done = step

    def raise_if_cancelled(self) -> None:
        if self.done >= self.step:
            raise Cancelled("cancelled by the client")


def test_a_cancelled_cached_request_leaves_nothing_behind(engine: HunyuanEngine) -> None:
    req = request(**FBC, step_cache_threshold=0.2)
    with pytest.raises(Cancelled):
        run(engine, request(**FBC, step_cache_threshold=0.2, seed=9), CancelAt(2))
    assert_no_cache_hooks(engine)
    fresh = HunyuanEngine.load(resolve_model("tiny-random"))
    np.testing.assert_array_equal(run(engine, req), run(fresh, req))
    assert engine.describe(req)["transformer_passes"] == fresh.describe(req)["transformer_passes"]


def test_the_cache_works_on_compiled_blocks() -> None:
    eager = HunyuanEngine.load(resolve_model("tiny-random"))
    compiled = HunyuanEngine.load(resolve_model("tiny-random"), compile_mode="on")
    for options in ({}, {**FBC, "step_cache_threshold": 0.2}, {}):
        req = request(**options)
        a, b = run(eager, req), run(compiled, req)
        # Compiled kernels round differently by a level at most (test_hunyuan_speedups.py).
        assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1
        assert eager.describe(req).get("transformer_passes") == compiled.describe(req).get(
            "transformer_passes"
        )
    assert_no_cache_hooks(compiled)
