"""Step caching (First Block Cache) on both tiny models, HunyuanVideo-I2V and HunyuanVideo 1.5,
one shared module (engines/hunyuan/cache.py) and so one set of tests: off is the exact path to
the bit, on it skips passes and says so, true CFG keeps a state per branch, nothing leaks
between requests.

Skip counts here say only that the mechanism works: the tiny models have random weights, so
how often they skip says nothing about the real models' speed-up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from framecast.api.errors import describe_validation_errors
from framecast.models.base import FIRST_BLOCK_CACHE_THRESHOLD, ModelInput
from framecast.models.hunyuan15_i2v import ImageToVideo15Input
from framecast.models.hunyuan_i2v import FPS, ImageToVideoInput

pytest.importorskip("diffusers")

import PIL.Image
import torch

from framecast.engines.base import Cancelled, Engine, GenerationRequest, NullHooks
from framecast.engines.hunyuan import engine as engine_module
from framecast.engines.hunyuan.blocks import transformer_blocks
from framecast.engines.hunyuan.cache import _head_hook
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.speedups import compile_blocks
from framecast.engines.hunyuan.weights import resolve_model
from framecast.engines.hunyuan15.engine import Hunyuan15Engine
from framecast.engines.hunyuan15.weights import resolve_model as resolve_model_15

STEPS = 4
FBC: dict[str, Any] = {"step_cache": "first_block"}
INPUTS: dict[type[ModelInput], dict[str, Any]] = {
    ImageToVideoInput: {"prompt": "x", "image_url": "https://example.com/a.jpg"},
    ImageToVideo15Input: {"prompt": "x", "image": "https://example.com/a.jpg"},
}
"""Each model's input, and the least a valid one holds."""


@dataclass
class Model:
    """One model's engine on its tiny weights, and what the tests need to know of it."""

    load: Callable[[], Any]
    guidance: str
    """The option that turns true CFG on (above 1): two transformer passes a step."""
    contexts: tuple[str, str]
    """The cache contexts of the conditional and unconditional passes."""
    own_pre_hooks: int
    """Forward pre-hooks the engine itself keeps on its transformer."""

    def __post_init__(self) -> None:
        self.engine = self.load()

    @property
    def transformer(self) -> Any:
        return self.engine.pipe.transformer


MODELS = {
    # The stock I2V __call__ enters no cache context: the engine names the branches.
    "i2v": lambda: Model(
        lambda: HunyuanEngine.load(resolve_model("tiny-random")),
        "cfg_scale",
        ("cond", "uncond"),
        0,
    ),
    # The 1.5 pipeline's guider enters its own; the exact path cuts the padding in a pre-hook.
    "1.5": lambda: Model(
        lambda: Hunyuan15Engine.load(resolve_model_15("tiny-random"), device="cpu"),
        "guidance_scale",
        ("pred_cond", "pred_uncond"),
        1,
    ),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request: pytest.FixtureRequest) -> Model:
    return MODELS[request.param]()


def request(model: Model, *, cfg: bool = False, **options: Any) -> GenerationRequest:
    return GenerationRequest(
        image=PIL.Image.new("RGB", (100, 60), (20, 140, 90)),
        prompt="clouds drift over the hills",
        seed=5,
        width=64,
        height=48,
        num_frames=5,
        fps=FPS,
        options={"num_inference_steps": STEPS, model.guidance: 2.5 if cfg else 1.0, **options},
    )


def run(engine: Engine, req: GenerationRequest, hooks: Any = None) -> np.ndarray:
    return np.stack(list(engine.generate(req, hooks or NullHooks())))


def result_metadata(engine: Engine, req: GenerationRequest) -> dict[str, Any]:
    """What the worker records with a result."""
    return {**engine.metadata(), **engine.describe(req)}


def assert_no_cache_hooks(transformer: Any, own_pre_hooks: int) -> None:
    assert not transformer.is_cache_enabled
    assert len(transformer._forward_pre_hooks) == own_pre_hooks
    assert not transformer._forward_hooks
    for block in transformer_blocks(transformer):
        hooks: Any = getattr(block, "_diffusers_hook", None)
        assert not hooks or not hooks.hooks


# -- the request fields ----------------------------------------------------------------------


@pytest.mark.parametrize("input_type", list(INPUTS))
def test_the_cache_is_off_unless_asked_and_has_the_published_default_threshold(
    input_type: type[ModelInput],
) -> None:
    base = INPUTS[input_type]
    off = input_type.model_validate(base).model_options()
    assert off["step_cache"] is None and off["step_cache_threshold"] is None
    on = input_type.model_validate({**base, **FBC}).model_options()
    assert on["step_cache"] == "first_block"
    assert on["step_cache_threshold"] == FIRST_BLOCK_CACHE_THRESHOLD == 0.06
    given = input_type.model_validate({**base, **FBC, "step_cache_threshold": 0.2})
    assert given.model_options()["step_cache_threshold"] == 0.2


@pytest.mark.parametrize("input_type", list(INPUTS))
@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"step_cache_threshold": 0.1}, "only has an effect with a step cache"),
        ({**FBC, "step_cache_threshold": 0}, "greater than 0"),
        ({**FBC, "step_cache_threshold": 1.5}, "less than or equal to 1"),
        ({"step_cache": "teacache"}, "step_cache must be one of 'first_block'"),
    ],
)
def test_bad_cache_fields_are_a_clear_422(
    input_type: type[ModelInput], fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        input_type.model_validate({**INPUTS[input_type], **fields})
    messages = [
        d["message"] for d in describe_validation_errors([dict(e) for e in caught.value.errors()])
    ]
    assert any(says in m for m in messages), messages


# -- the engines -----------------------------------------------------------------------------


def test_off_is_the_exact_path_bit_for_bit_even_right_after_a_cached_request(
    model: Model,
) -> None:
    engine = model.engine
    exact = run(engine, request(model))
    run(engine, request(model, **FBC, step_cache_threshold=0.5))
    assert_no_cache_hooks(model.transformer, model.own_pre_hooks)
    np.testing.assert_array_equal(run(engine, request(model, step_cache=None)), exact)
    meta = result_metadata(engine, request(model))
    assert meta["path"] == "exact"
    assert not {"step_cache", "step_cache_threshold", "transformer_passes"} & meta.keys()


def test_a_high_threshold_skips_passes_and_the_result_says_so(model: Model) -> None:
    engine = model.engine
    exact = run(engine, request(model))
    req = request(model, **FBC, step_cache_threshold=0.5)
    cached = run(engine, req)
    meta = result_metadata(engine, req)
    passes = meta["transformer_passes"]
    assert passes["computed"] + passes["skipped"] == STEPS
    assert passes["computed"] >= 1 and passes["skipped"] >= 1  # the first pass always runs
    assert not np.array_equal(cached, exact)
    assert meta["path"] == "fast"
    assert meta["step_cache"] == "first_block" and meta["step_cache_threshold"] == 0.5
    # Counts belong to the request that ran: none for one that has not.
    assert "transformer_passes" not in engine.describe(request(model, **FBC))


@pytest.mark.parametrize("cfg", [False, True])
def test_a_cache_that_skips_nothing_changes_nothing(model: Model, cfg: bool) -> None:
    # The hooks wrap the blocks without changing their arithmetic: only skipping does.
    exact = run(model.engine, request(model, cfg=cfg))
    req = request(model, cfg=cfg, **FBC, step_cache_threshold=1e-6)
    np.testing.assert_array_equal(run(model.engine, req), exact)
    passes = model.engine.describe(req)["transformer_passes"]
    assert passes == {"computed": STEPS * (2 if cfg else 1), "skipped": 0}


def test_true_cfg_keeps_a_cache_state_per_branch(model: Model) -> None:
    transformer = model.transformer
    seen: list[tuple[str, torch.Tensor]] = []

    def record(_block: Any, args: Any) -> None:
        # Both transformers call their blocks with positional arguments: (hidden, text, ...).
        seen.append((_head_hook(transformer).state_manager.context.name, args[1]))

    handle = transformer_blocks(transformer)[0].register_forward_pre_hook(record)
    try:
        req = request(model, cfg=True, **FBC, step_cache_threshold=1.0)
        run(model.engine, req)
    finally:
        handle.remove()
    cond, uncond = model.contexts
    assert [name for name, _ in seen] == [cond, uncond] * STEPS
    # Each branch has its own text: the negative prompt's embeddings are the uncond's.
    shapes = [{tuple(t.shape) for name, t in seen if name == branch} for branch in (cond, uncond)]
    assert len(shapes[0]) == len(shapes[1]) == 1 and shapes[0] != shapes[1]
    # At the highest threshold everything that can be skipped is: only the first pass of each
    # branch runs. Were the state shared, the uncond pass would reuse the cond one's at step 0.
    assert model.engine.describe(req)["transformer_passes"] == {
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


@pytest.mark.parametrize("cfg", [False, True])
def test_a_cancelled_cached_request_leaves_nothing_behind(model: Model, cfg: bool) -> None:
    engine = model.engine
    req = request(model, cfg=cfg, **FBC, step_cache_threshold=0.2)
    with pytest.raises(Cancelled):
        run(engine, request(model, cfg=cfg, **FBC, step_cache_threshold=0.2, seed=9), CancelAt(2))
    assert_no_cache_hooks(model.transformer, model.own_pre_hooks)
    fresh = model.load()
    np.testing.assert_array_equal(run(engine, req), run(fresh, req))
    assert engine.describe(req)["transformer_passes"] == fresh.describe(req)["transformer_passes"]


def test_the_cache_works_on_compiled_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # HunyuanVideo-I2V's blocks. What the cache meets under compile is dynamo's: its hooks
    # traced into the graph or kept out of it, guards, recompiles. aot_eager runs all of that
    # without inductor's C++ generation (tens of seconds on a CPU, and not the code a GPU
    # runs); inductor compiles the engine in test_hunyuan_fp8.py and test_hunyuan15_speedups.py.
    monkeypatch.setattr(
        engine_module, "compile_blocks", functools.partial(compile_blocks, backend="aot_eager")
    )
    torch._dynamo.reset()
    i2v = MODELS["i2v"]()
    eager = i2v.engine
    compiled = HunyuanEngine.load(resolve_model("tiny-random"), compile_mode="on")
    assert compiled.compiled
    all_options: tuple[dict[str, Any], ...] = ({}, {**FBC, "step_cache_threshold": 0.2}, {})
    for options in all_options:
        req = request(i2v, **options)
        a, b = run(eager, req), run(compiled, req)
        # Compiled kernels round differently by a level at most (test_hunyuan_speedups.py).
        assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1
        assert eager.describe(req).get("transformer_passes") == compiled.describe(req).get(
            "transformer_passes"
        )
    assert_no_cache_hooks(compiled.pipe.transformer, i2v.own_pre_hooks)
