"""Sequence parallelism for both Hunyuan transformers, through diffusers' context parallelism.

diffusers splits a model's sequence across a process group when given a plan
(``enable_parallelism(cp_plan=...)``) and runs Ulysses or Ring attention over it; it ships none
for either HunyuanVideo model (0.42: neither ``HunyuanVideoTransformer3DModel`` nor
``HunyuanVideo15Transformer3DModel`` has a ``_cp_plan``). :func:`cp_plan` writes ours from the
model's :class:`~framecast.engines.hunyuan.blocks.SequenceSplit`: the image tokens (the patch
embedder's output), the text tokens (HunyuanVideo-I2V: the token refiner's output; 1.5: the first
block's text input) and the two rotary tables are split along the sequence, and the output
projection is gathered. The transformers themselves are diffusers' own.

Three things around it would otherwise be silently wrong or fail (tried on the tiny models with
2 and 4 gloo processes, see tests/unit/test_parallel_transformer.py):

- First-frame tokens (HunyuanVideo-I2V). Each block modulates its first
  ``first_frame_num_tokens`` local tokens as the (clean) first frame, a count the transformer
  computes from the whole sequence. After the split, rank r holds image tokens
  ``[start_r, start_r + len_r)`` and its own count is ``clamp(first_frame - start_r, 0, len_r)``:
  :class:`_Layout` hands each block that. 1.5's blocks take no such count.
- Text mask. The transformers build their padding masks from global counts, which match no
  rank's local layout. The engines cut the text padding and drop the mask (speedups.py,
  hunyuan15/exact.py); a parallel pass refuses to run any other way.
- Sequence lengths. diffusers' even split needs the image and the text token counts to divide
  by the group size, which a prompt's length rarely does. Each pass checks, and where they do
  not divide switches diffusers' "anything" mode on for that pass (uneven shards, padded inside
  the collectives and unpadded after); the output is gathered the same way, padded to the
  longest shard and cut back (:meth:`_Layout._gather`). So every size and prompt runs, any N.
  That mode exists for pure Ulysses and pure Ring only, which is why Ulysses x Ring together is
  refused (:func:`choose_degrees`).

Ring attention combines partial results by their log-sum-exp, and diffusers' native (SDPA)
backend cannot return one: :func:`_native_forward_op_with_lse` adds it, so Ring runs with the
default attention on the CPU (tests) and on GPUs alike.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from diffusers.models import attention_dispatch
from diffusers.models._modeling_parallel import ContextParallelConfig, ContextParallelInput

from framecast.engines.hunyuan.blocks import SequenceSplit, spec_of
from framecast.engines.hunyuan.speedups import UnmaskedAttnProcessor
from framecast.errors import InputError

log = logging.getLogger("framecast.engines.hunyuan.parallel")

_SEQUENCE = ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)
_ROTARY = ContextParallelInput(split_dim=0, expected_dims=2, split_output=True)


def cp_plan(split: SequenceSplit) -> dict[str, Any]:
    """Our context-parallel plan for a transformer cut as ``split`` says: the splits. The gather
    after the output projection is :meth:`_Layout._gather`, which diffusers' uneven gather
    cannot replace on gloo (its ``all_gather`` of unequal shards is NCCL-only)."""
    text: dict[str | int, ContextParallelInput] = (
        {0: _SEQUENCE}
        if split.text_argument is None
        else {split.text_argument: ContextParallelInput(split_dim=1, expected_dims=3)}
    )
    return {
        split.image: {0: _SEQUENCE},  # [B, image tokens, C]
        split.text: text,  # [B, text tokens, C]
        split.rotary: {0: _ROTARY, 1: _ROTARY},  # cos, sin: [image tokens, D]
    }


class ParallelUnsupported(ValueError):
    """A parallel setting or combination this engine cannot run; the message says what to do."""


@dataclass(frozen=True)
class Degrees:
    """How a group of ``ulysses * ring`` processes splits attention."""

    ulysses: int
    ring: int

    @property
    def world_size(self) -> int:
        return self.ulysses * self.ring


def choose_degrees(
    world_size: int, heads: int, ulysses: int | None = None, ring: int | None = None
) -> Degrees:
    """Ulysses when the heads divide among the processes (one all-to-all per attention, the
    fastest on fast links), Ring otherwise (any head count); ``ulysses``/``ring`` override.

    Ulysses x Ring together is refused: diffusers' combined attention has no uneven-length
    mode, so it would fail on most prompts (their text length divides by nothing in particular).
    """
    if ulysses is None and ring is None:
        chosen = Degrees(world_size, 1) if heads % world_size == 0 else Degrees(1, world_size)
    elif ulysses is not None and ring is not None:
        chosen = Degrees(ulysses, ring)
    elif ulysses is not None:
        chosen = Degrees(ulysses, world_size // ulysses)
    else:
        assert ring is not None
        chosen = Degrees(world_size // ring, ring)
    if chosen.world_size != world_size:
        raise ParallelUnsupported(
            f"FRAMECAST_ULYSSES_DEGREE={chosen.ulysses} x FRAMECAST_RING_DEGREE={chosen.ring} "
            f"is not the group's {world_size} processes; set degrees whose product is {world_size}"
        )
    if chosen.ulysses > 1 and chosen.ring > 1:
        raise ParallelUnsupported(
            f"Ulysses {chosen.ulysses} x Ring {chosen.ring}: diffusers' combined attention needs "
            "every sequence length to divide by the group size, which a prompt's text length "
            "rarely does; set FRAMECAST_ULYSSES_DEGREE or FRAMECAST_RING_DEGREE to the number of "
            "processes (or leave both unset)"
        )
    if heads % chosen.ulysses:
        raise ParallelUnsupported(
            f"FRAMECAST_ULYSSES_DEGREE={chosen.ulysses} does not divide the model's {heads} "
            f"attention heads; use a divisor of {heads}, or FRAMECAST_RING_DEGREE={world_size}"
        )
    return chosen


def shard_sizes(length: int, parts: int) -> list[int]:
    """How ``tensor_split`` (and, when ``length`` divides, ``chunk``) cuts ``length`` tokens."""
    return [length // parts + (1 if i < length % parts else 0) for i in range(parts)]


class _Layout:
    """Per pass: how the sequence is split; this rank's first-frame count for the blocks; the
    gather of the output, padded to the longest shard and unpadded after."""

    def __init__(
        self, transformer: Any, config: ContextParallelConfig, attention: UnmaskedAttnProcessor
    ) -> None:
        self.config = config
        self.attention = attention
        self.split = spec_of(transformer).sequence_split
        self.signature = inspect.signature(transformer.forward)
        config_of: Any = transformer.config
        self.patch = (int(config_of.patch_size_t), int(config_of.patch_size))
        self.local = 0
        self.sizes: list[int] = []
        self.handles = [
            transformer.register_forward_pre_hook(self._on_pass, with_kwargs=True),
            transformer.get_submodule(self.split.output).register_forward_hook(self._gather),
        ]
        if self.split.first_frame_argument is not None:
            for block in spec_of(transformer).blocks(transformer):
                self.handles.append(
                    block.register_forward_pre_hook(self._on_block, with_kwargs=True)
                )

    def _on_pass(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        given = self.signature.bind_partial(*args, **kwargs).arguments
        latents = given["hidden_states"]
        assert isinstance(latents, torch.Tensor)
        text = sum(
            int(given[name].shape[1])
            for name in self.split.text_inputs
            if given.get(name) is not None
        )
        if not self.attention.unpadded:
            # The mask is built from global counts; under a split it would silently mask the
            # wrong tokens.
            raise RuntimeError("a parallel transformer pass needs the text without padding")
        p_t, p = self.patch
        _, _, frames, height, width = latents.shape
        first_frame = (height // p) * (width // p)
        image = (frames // p_t) * first_frame
        parts = int(self.config._world_size)
        if text < parts:
            raise InputError(
                f"the prompt is {text} tokens, fewer than the {parts} processes "
                "it is split across; write a longer prompt",
                field="prompt",
            )
        uneven = bool(image % parts or text % parts)
        # diffusers reads these at each call: the even path where it can, else the uneven one.
        if (self.config.ulysses_degree or 1) > 1:
            self.config.ulysses_anything = uneven
        else:
            self.config.ring_anything = uneven
        rank = dist.get_rank(self.config._flattened_mesh.get_group())
        self.sizes = shard_sizes(image, parts)
        start = sum(self.sizes[:rank])
        self.local = max(0, min(first_frame - start, self.sizes[rank]))

    def _gather(self, _module: Any, _args: Any, output: torch.Tensor) -> torch.Tensor:
        longest = max(self.sizes)
        padded = torch.nn.functional.pad(output, (0, 0, 0, longest - output.shape[1]))
        parts = [torch.empty_like(padded) for _ in self.sizes]
        dist.all_gather(parts, padded.contiguous(), group=self.config._flattened_mesh.get_group())
        return torch.cat([part[:, :n] for part, n in zip(parts, self.sizes, strict=True)], dim=1)

    def _on_block(
        self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        assert self.split.first_frame_argument is not None
        name, index = self.split.first_frame_argument
        # HunyuanVideo-I2V's transformer passes it positionally.
        if name in kwargs:
            kwargs[name] = self.local
        elif len(args) > index:
            args = (*args[:index], self.local, *args[index + 1 :])
        return args, kwargs

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def enable_sequence_parallel(transformer: Any, degrees: Degrees, device: torch.device) -> None:
    """Split every pass of ``transformer`` (either model's) across the (initialised) default
    process group.

    Every rank must call this with the same degrees; the transformer's attention must be the
    engine's :class:`UnmaskedAttnProcessor` (the text mask cannot be split, see above).
    """
    spec = spec_of(transformer)
    block: Any = spec.blocks(transformer)[0]
    processor = block.attn.processor
    if not isinstance(processor, UnmaskedAttnProcessor):
        raise ParallelUnsupported(
            "sequence parallelism needs the engine's unmasked attention (exact_speedups)"
        )
    mesh = dist.device_mesh.init_device_mesh(
        device.type, (degrees.ring, degrees.ulysses), mesh_dim_names=("ring", "ulysses")
    )
    config = ContextParallelConfig(ring_degree=degrees.ring, ulysses_degree=degrees.ulysses)
    config.mesh = mesh
    if degrees.ring > 1:
        _give_native_attention_an_lse()
    with _accelerator_count_at_least_one():
        transformer.enable_parallelism(config=config, cp_plan=cp_plan(spec.sequence_split))
    _Layout(transformer, config, processor)
    log.info(
        "%s transformer split across %d processes (Ulysses %d, Ring %d)",
        spec.model,
        degrees.world_size,
        degrees.ulysses,
        degrees.ring,
    )


@contextlib.contextmanager
def _accelerator_count_at_least_one() -> Iterator[None]:
    """diffusers picks the model's device as ``rank % torch.accelerator.device_count()``, which
    divides by zero on a CPU-only torch; the device is only recorded, the mesh is ours."""
    if torch.accelerator.device_count() > 0:
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


_ORIGINAL_NATIVE_OP = attention_dispatch._native_attention_forward_op


def _native_forward_op_with_lse(
    ctx: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    return_lse: bool = False,
    _save_ctx: bool = True,
    _parallel_config: Any = None,
) -> Any:
    """diffusers' native (SDPA) forward op, which also returns the log-sum-exp when asked
    (it raises instead): forward only, as inference needs. [B, S, H, D] in, [B, S, H] lse."""
    if not return_lse:
        return _ORIGINAL_NATIVE_OP(
            ctx,
            query,
            key,
            value,
            attn_mask,
            dropout_p,
            is_causal,
            scale,
            enable_gqa,
            return_lse,
            _save_ctx,
            _parallel_config,
        )
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    if query.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
        )[:2]
    elif attn_mask is None and query.dtype in (torch.float16, torch.bfloat16):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, dropout_p, is_causal, False, scale=scale
        )[:2]
    else:  # exact, if slow: only float32 on a GPU gets here
        scores = (q.float() @ k.float().transpose(-1, -2)) * (scale or 1 / math.sqrt(q.shape[-1]))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)
        out = (torch.softmax(scores, dim=-1) @ v.float()).to(q.dtype)
    return out.transpose(1, 2), lse.transpose(1, 2)


def _give_native_attention_an_lse() -> None:
    """Route diffusers' native backend's CP forward op through :func:`_native_forward_op_with_lse`.

    ``_native_attention`` looks its forward op up by module-global name at each call, so this is
    the one place to add the log-sum-exp; calls without ``return_lse`` run the original op.
    """
    attention_dispatch._native_attention_forward_op = _native_forward_op_with_lse
