"""Step caching, opt in per request: diffusers' First Block Cache on the transformer.

First Block Cache (ParaAttention's FBCache, built into diffusers) runs the first transformer
block every pass and compares its residual with the one of the last full pass; when the
relative change is below the threshold, the other blocks are skipped and their residual from
that pass is reused. That trades exactness for speed, so results made with it are
labelled ``"path": "fast"``.

What this module adds around diffusers' hooks, without forking the pipeline's ``__call__``:

- Cache context. The hooks keep their state per ``transformer.cache_context(name)``, which
  the stock I2V ``__call__`` never enters (the hooks then raise "No cache context is set").
  Forward pre/post hooks on the transformer, installed for one call only, enter
  ``"cond"`` or ``"uncond"`` around each pass. Which one is told from the text embeddings the
  pass is given, not from call order, so true CFG's two passes never share a state.
- Per request. The cache hooks are installed at the start of a request that asks for them
  and removed at its end, whatever the end (a cancel from the step callback included): a
  request without a cache runs with no cache hook at all, and each cached request starts
  from empty state. diffusers itself resets that state only at the end of a full
  ``__call__``, which a cancelled request never reaches.
- Counts. How many transformer passes ran every block and how many were skipped, for the
  result's metadata.

Why no other of diffusers' caches: TaylorSeer's default mode keeps two Taylor factors of every
attention output of all 60 blocks, about 84 GB per CFG branch at 720p x 129 frames (60 x 2 x
113,256 tokens x 3072 x 2 bytes), more than an 80 GB GPU has beside the model. MagCache needs
magnitude ratios calibrated per checkpoint, and diffusers ships only FLUX's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks.first_block_cache import FBCHeadBlockHook, FirstBlockCacheConfig
from diffusers.hooks.hooks import HookRegistry
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoTransformer3DModel,
)

from framecast.engines.hunyuan.pipeline import Conditions

STEP_CACHES = frozenset({"first_block"})
"""The ``step_cache`` values this engine understands."""


@dataclass
class Passes:
    """Transformer passes of one request: full ones, and ones whose later blocks were skipped."""

    computed: int = 0
    skipped: int = 0


class _ContextPerPass:
    """Forward hooks that put each transformer pass in its cache context and count it."""

    def __init__(
        self,
        transformer: HunyuanVideoTransformer3DModel,
        conditions: Conditions,
        head: FBCHeadBlockHook,
    ) -> None:
        self.transformer = transformer
        self.head = head
        self.passes = Passes()
        self._embeds = {"cond": conditions.prompt_embeds}
        if conditions.negative_prompt_embeds is not None:
            self._embeds["uncond"] = conditions.negative_prompt_embeds
        self._open: AbstractContextManager[None] | None = None

    def which(self, embeds: torch.Tensor) -> str:
        # The pipeline casts the embeddings to the transformer's dtype (a new tensor on a GPU,
        # where the text encoders run in fp16 and the transformer in bf16), so compare values.
        # Were both sets of embeddings equal, both passes would compute the same thing and
        # sharing one state would skip nothing that differs; "cond" is then as right as any.
        for name, candidate in self._embeds.items():
            if candidate is embeds or (
                candidate.shape == embeds.shape
                and torch.equal(candidate.to(device=embeds.device, dtype=embeds.dtype), embeds)
            ):
                return name
        raise RuntimeError(
            "step cache: a transformer pass got text embeddings that are neither the prompt's "
            "nor the negative prompt's; cannot tell its cache state"
        )

    def before(self, _module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        self.close()
        context = self.transformer.cache_context(self.which(kwargs["encoder_hidden_states"]))
        context.__enter__()
        self._open = context

    def after(self, _module: Any, _args: Any, _kwargs: Any, _output: Any) -> None:
        if self._open is None:
            return
        # Read while the pass's context is still set: the state is kept per context.
        if self.head.state_manager.get_state().should_compute:  # type: ignore[no-untyped-call]
            self.passes.computed += 1
        else:
            self.passes.skipped += 1
        self.close()

    def close(self) -> None:
        if self._open is not None:
            context, self._open = self._open, None
            context.__exit__(None, None, None)


def _head_hook(transformer: HunyuanVideoTransformer3DModel) -> FBCHeadBlockHook:
    """The hook diffusers put on the first block: it decides, and remembers, each pass."""
    registry = HookRegistry.check_if_exists_or_initialize(transformer.transformer_blocks[0])
    for hook in registry.hooks.values():
        if isinstance(hook, FBCHeadBlockHook):
            return hook
    raise RuntimeError("step cache: diffusers put no First Block Cache hook on the first block")


@contextmanager
def step_cache(
    transformer: HunyuanVideoTransformer3DModel,
    kind: str | None,
    threshold: float | None,
    conditions: Conditions,
) -> Iterator[Passes | None]:
    """Run the body (one denoising ``__call__``) with the step cache ``kind`` on, or with no
    cache at all for None; yields the pass counts, complete once the body has run."""
    if transformer.is_cache_enabled:
        # Only if an earlier request died between enabling and disabling; its hooks, and
        # their state, must not reach this one.
        transformer.disable_cache()
    if kind is None:
        yield None
        return
    if kind not in STEP_CACHES:
        raise ValueError(f"unknown step_cache {kind!r}; expected one of {sorted(STEP_CACHES)}")
    if threshold is None or not threshold > 0:
        raise ValueError(f"step_cache_threshold must be > 0, got {threshold}")
    # Fresh hooks, so fresh state: nothing of an earlier request, finished or not, carries over.
    transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    try:
        per_pass = _ContextPerPass(transformer, conditions, _head_hook(transformer))
        handles = [
            transformer.register_forward_pre_hook(per_pass.before, with_kwargs=True),
            # always_call: a pass that raises still leaves its context.
            transformer.register_forward_hook(per_pass.after, with_kwargs=True, always_call=True),
        ]
        try:
            yield per_pass.passes
        finally:
            for handle in handles:
                handle.remove()
            per_pass.close()
    finally:
        transformer.disable_cache()
