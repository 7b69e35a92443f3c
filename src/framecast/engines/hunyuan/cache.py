"""Step caching, opt in per request: diffusers' First Block Cache on the transformer, for both
Hunyuan models (the model's specifics come from its :class:`~.blocks.TransformerSpec`).

First Block Cache (ParaAttention's FBCache, built into diffusers) runs the first transformer
block every pass and compares its residual with the one of the last full pass; when the
relative change is below the threshold, the other blocks are skipped and their residual from
that pass is reused. That trades exactness for speed, so results made with it are
labelled ``"path": "fast"``.

What this module adds around diffusers' hooks, without forking either pipeline's ``__call__``:

- Block registration. diffusers' hooks look each block's class up in its
  ``TransformerBlockRegistry`` (which of the block's outputs are the video and the text
  tokens); diffusers 0.42 registers HunyuanVideo's blocks but not HunyuanVideo 1.5's.
  :func:`register_blocks` registers the classes a spec names that it lacks.
- Cache context. The hooks keep their state per ``transformer.cache_context(name)``. The 1.5
  pipeline's guider enters one itself around each pass (``"pred_cond"``, ``"pred_uncond"``);
  the stock HunyuanVideo-I2V ``__call__`` never does (the hooks then raise "No cache context is
  set"). For it, the caller names each branch's text embeddings (``branches``), and forward
  pre/post hooks on the transformer, installed for one call only, enter ``"cond"`` or
  ``"uncond"`` around each pass, told from the embeddings the pass is given, not from call
  order, so true CFG's two passes never share a state.
- Per request. The cache hooks are installed at the start of a request that asks for them
  and removed at its end, whatever the end (a cancel from the step callback included): a
  request without a cache runs with no cache hook at all, and each cached request starts
  from empty state. diffusers itself resets that state only at the end of a full
  ``__call__``, which a cancelled request never reaches.
- Counts. How many transformer passes ran every block and how many were skipped, for the
  result's metadata (:class:`CachedRequests`).

Why no other of diffusers' caches: TaylorSeer's default mode keeps two Taylor factors of every
attention output of all 60 blocks, about 84 GB per CFG branch at 720p x 129 frames (60 x 2 x
113,256 tokens x 3072 x 2 bytes), more than an 80 GB GPU has beside the model. MagCache needs
magnitude ratios calibrated per checkpoint, and diffusers ships only FLUX's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.hooks.first_block_cache import FBCHeadBlockHook, FirstBlockCacheConfig
from diffusers.hooks.hooks import HookRegistry

from framecast.engines.hunyuan.blocks import TransformerSpec, spec_of

STEP_CACHES = frozenset({"first_block"})
"""The ``step_cache`` values the engines understand."""


@dataclass
class Passes:
    """Transformer passes of one request: full ones, and ones whose later blocks were skipped."""

    computed: int = 0
    skipped: int = 0


def register_blocks(spec: TransformerSpec) -> None:
    """Register with diffusers' ``TransformerBlockRegistry`` each block class of ``spec`` it
    lacks: which output is the video tokens and which the text tokens (diffusers'
    registrations, HunyuanVideo's among them, are left as they are)."""
    for block_class in spec.block_classes:
        try:
            TransformerBlockRegistry.get(block_class)
        except ValueError:  # "not registered"
            TransformerBlockRegistry.register(
                model_class=block_class,
                metadata=TransformerBlockMetadata(
                    return_hidden_states_index=spec.block_outputs.index("hidden_states"),
                    return_encoder_hidden_states_index=spec.block_outputs.index(
                        "encoder_hidden_states"
                    ),
                ),
            )


class _CountPasses:
    """Forward hooks that count each transformer pass and, given the branches' text
    embeddings, first put it in its cache context."""

    def __init__(
        self,
        transformer: Any,
        head: FBCHeadBlockHook,
        text_input: str,
        branches: Mapping[str, torch.Tensor] | None,
    ) -> None:
        self.transformer = transformer
        self.head = head
        self.text_input = text_input
        self.branches = branches
        self.passes = Passes()
        self._open: AbstractContextManager[None] | None = None

    def which(self, embeds: torch.Tensor) -> str:
        assert self.branches is not None
        # The pipeline casts the embeddings to the transformer's dtype (a new tensor on a GPU,
        # where the text encoders run in fp16 and the transformer in bf16), so compare values.
        # Were both sets of embeddings equal, both passes would compute the same thing and
        # sharing one state would skip nothing that differs; the first is then as right as any.
        for name, candidate in self.branches.items():
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
        context = self.transformer.cache_context(self.which(kwargs[self.text_input]))
        context.__enter__()
        self._open = context

    def after(self, _module: Any, _args: Any, _kwargs: Any, _output: Any) -> None:
        # Read while the pass's context is still set: the state is kept per context.
        if self.head.state_manager.get_state().should_compute:  # type: ignore[no-untyped-call]
            self.passes.computed += 1
        else:
            self.passes.skipped += 1
        self.close()

    def after_own_context(self, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        if self._open is not None:  # a pass that raised gets here too, with no context
            self.after(module, args, kwargs, output)

    def close(self) -> None:
        if self._open is not None:
            context, self._open = self._open, None
            context.__exit__(None, None, None)

    def install(self) -> list[torch.utils.hooks.RemovableHandle]:
        if self.branches is None:  # the pipeline enters the contexts itself
            return [self.transformer.register_forward_hook(self.after, with_kwargs=True)]
        return [
            self.transformer.register_forward_pre_hook(self.before, with_kwargs=True),
            # always_call: a pass that raises still leaves its context.
            self.transformer.register_forward_hook(
                self.after_own_context, with_kwargs=True, always_call=True
            ),
        ]


def _head_hook(transformer: Any) -> FBCHeadBlockHook:
    """The hook diffusers put on the first block: it decides, and remembers, each pass."""
    first = spec_of(transformer).blocks(transformer)[0]
    registry = HookRegistry.check_if_exists_or_initialize(first)
    for hook in registry.hooks.values():
        if isinstance(hook, FBCHeadBlockHook):
            return hook
    raise RuntimeError("step cache: diffusers put no First Block Cache hook on the first block")


@contextmanager
def step_cache(
    transformer: Any,
    kind: str | None,
    threshold: float | None,
    branches: Mapping[str, torch.Tensor] | None = None,
) -> Iterator[Passes | None]:
    """Run the body (one denoising ``__call__``) with the step cache ``kind`` on, or with no
    cache at all for None; yields the pass counts, complete once the body has run.

    ``branches``: each cache context's name and the text embeddings its passes get (the
    unconditional branch only with true CFG), for a pipeline that enters no cache context
    itself; None for one that does.
    """
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
    spec = spec_of(transformer)
    if len(spec.blocks(transformer)) < 2:
        raise ValueError(f"step cache: this {spec.model} transformer has fewer than two blocks")
    register_blocks(spec)
    # Fresh hooks, so fresh state: nothing of an earlier request, finished or not, carries over.
    transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    try:
        counter = _CountPasses(transformer, _head_hook(transformer), spec.text_input, branches)
        handles = counter.install()
        try:
            yield counter.passes
        finally:
            for handle in handles:
                handle.remove()
            counter.close()
    finally:
        transformer.disable_cache()


class CachedRequests:
    """Runs requests under :func:`step_cache` and keeps the pass counts of the last one that
    had a cache, for its result's metadata (:meth:`describe`)."""

    def __init__(self) -> None:
        self._last: tuple[object, Passes] | None = None

    @contextmanager
    def running(
        self,
        request: object,
        transformer: Any,
        kind: str | None,
        threshold: float | None,
        branches: Mapping[str, torch.Tensor] | None = None,
    ) -> Iterator[None]:
        """:func:`step_cache` around the body, its counts kept as ``request``'s."""
        self._last = None
        with step_cache(transformer, kind, threshold, branches) as passes:
            if passes is not None:
                self._last = (request, passes)
            yield

    def describe(self, request: object, kind: str | None) -> dict[str, Any]:
        """What a request with the step cache ``kind`` adds to its metadata: the fast path
        (skipped blocks are not what the model computes, whatever the engine's own settings
        say), and the pass counts once it has run; nothing without a cache."""
        if kind is None:
            return {}
        described: dict[str, Any] = {"path": "fast"}
        if self._last is not None and self._last[0] is request:
            described["transformer_passes"] = asdict(self._last[1])
        return described
