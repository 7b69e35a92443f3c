"""The exact fast path: changes that make a step cheaper without changing what it computes.

- Text padding cut: with one prompt per call, the LLaVA text is padded to 256 tokens and the
  transformer masks the padding out. Cutting it (:func:`trim_padding`) removes work and leaves
  every attended token, so nothing the model computes changes.
- No attention mask: once nothing is padded, diffusers still passes an all-true boolean mask
  [B,1,1,N] to every attention call, and with any mask PyTorch's SDPA cannot use its flash
  kernel (and diffusers' flash/sage backends refuse it). :class:`UnmaskedAttnProcessor` passes
  none, but only for calls the engine has marked as unpadded.
- Attention backend (``FRAMECAST_ATTENTION``): once there is no mask, every kernel diffusers
  can dispatch to applies; :data:`ATTENTION_BACKENDS` names those worth choosing on a GPU.
  Calls that still carry a mask stay on PyTorch's SDPA, the only backend that takes one.
- Regional compilation: diffusers' ``compile_repeated_blocks`` matches block classes by name
  and its list lacks the ``TokenReplace*`` blocks the I2V model is made of, so it compiles
  almost nothing. :func:`compile_blocks` compiles every repeated block its model's spec names
  (blocks.py): I2V's double- and single-stream blocks, 1.5's dual-stream ones.

Each has a CPU test at tiny scale against the stock pipeline (tests/unit/test_hunyuan_speedups.py).
The start-up checks, the compile decision and the result's ``path`` (:func:`check_speedups`,
:func:`compiles`, :func:`path_of`) are here for both engines too, with the compilation: the
HunyuanVideo 1.5 engine uses them as the I2V one does (tests/unit/test_hunyuan15_speedups.py).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoAttnProcessor2_0,
    HunyuanVideoTransformer3DModel,
)

from framecast.engines.base import EngineUnavailable
from framecast.engines.hunyuan.attention_kernels import ATTENTION_HINTS, missing_attention_package
from framecast.engines.hunyuan.blocks import transformer_blocks
from framecast.engines.hunyuan.flops import FULL_SIZE
from framecast.engines.hunyuan.fp8 import FP8_MODES, Fp8Unsupported, check_fp8_supported
from framecast.engines.hunyuan.pipeline import Conditions

_KERNELS: dict[str, AttentionBackendName | None] = {
    "auto": None,
    "cudnn": AttentionBackendName._NATIVE_CUDNN,
    "flash": AttentionBackendName._NATIVE_FLASH,
    "flash-attn": AttentionBackendName.FLASH,
    "flash-attn-3": AttentionBackendName._FLASH_3,
    "sage": AttentionBackendName.SAGE,
}

ATTENTION_BACKENDS: dict[str, tuple[AttentionBackendName | None, str]] = {
    name: (backend, ATTENTION_HINTS.get(name, "")) for name, backend in _KERNELS.items()
}
"""``FRAMECAST_ATTENTION`` values: diffusers' backend for calls without a mask, and what to do
when it cannot run (attention_kernels.py, torch-free, for the loaders' early check). ``auto``
leaves the choice to PyTorch's SDPA."""

INEXACT_ATTENTION = frozenset({"sage"})
"""Backends that quantise (INT8 QK^T): the fast path, labelled in results."""


class AttentionUnavailable(RuntimeError):
    """The chosen attention backend cannot run here."""


def check_attention_backend(choice: str, device: torch.device, dtype: torch.dtype) -> None:
    """Run one small attention call through the backend ``choice`` names, as the model will
    (the published model's head size, a few tokens).

    A missing package, a CPU device or a GPU too old all show up here, at start-up, rather
    than in the first request.
    """
    if choice not in ATTENTION_BACKENDS:
        raise AttentionUnavailable(
            f"FRAMECAST_ATTENTION={choice} is not one of {', '.join(ATTENTION_BACKENDS)}"
        )
    backend, hint = ATTENTION_BACKENDS[choice]
    if backend is None:
        return
    missing = missing_attention_package(choice)
    if missing is not None:
        raise AttentionUnavailable(missing)
    # [batch, tokens, heads, head_dim]: the layout diffusers' processors hand the backend.
    head_dim = FULL_SIZE["attention_head_dim"]
    q, k, v = (torch.randn(1, 64, 2, head_dim, device=device, dtype=dtype) for _ in range(3))
    try:
        dispatch_attention_fn(q, k, v, backend=backend)
    except Exception as exc:  # each backend fails in its own way; all mean "not here"
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise AttentionUnavailable(
            f"FRAMECAST_ATTENTION={choice} cannot run on {device} ({dtype}): "
            f"{type(exc).__name__}: {reason}; {hint}, or use FRAMECAST_ATTENTION=auto"
        ) from exc


def check_speedups(attention: str, linear: str, device: torch.device, dtype: torch.dtype) -> None:
    """Before the minutes of loading weights: refuse, as :class:`EngineUnavailable` with what to
    do, an attention kernel (:func:`check_attention_backend`) or FP8 linears
    (``FRAMECAST_LINEAR``, fp8.py) that cannot run on ``device``."""
    try:
        check_attention_backend(attention, device, dtype)
        if linear in FP8_MODES:
            check_fp8_supported(device, linear)
    except (AttentionUnavailable, Fp8Unsupported) as exc:
        raise EngineUnavailable(str(exc)) from exc


def compiles(compile_mode: str, linear: str, device: torch.device, log: logging.Logger) -> bool:
    """Whether an engine compiles its transformer blocks at start: as ``FRAMECAST_COMPILE``
    says (auto: on a GPU), and always with ``FRAMECAST_LINEAR=fp8`` (said in ``log``)."""
    asked = compile_mode == "on" or (compile_mode == "auto" and device.type == "cuda")
    if linear == "fp8" and not asked:
        # Eagerly, the per-token casts to e4m3 cost more memory traffic than the FP8
        # products save; compiled, each joins the kernel that makes its input.
        log.info(
            "FRAMECAST_LINEAR=fp8 compiles the transformer blocks (FRAMECAST_COMPILE=%s)",
            compile_mode,
        )
    return asked or linear == "fp8"


def path_of(linear: str, attention: str) -> str:
    """A result's ``path``: ``exact`` where the engine computes what the model does (up to
    floating-point rounding), ``fast`` with FP8 linears or quantised attention, where the video
    deviates from the model's. (A step-cached request is ``fast`` whatever this says.)"""
    return "exact" if linear == "bf16" and attention not in INEXACT_ATTENTION else "fast"


def _trimmed(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``embeds`` and ``mask`` without the padding at the end, or None if it is not all at the end."""
    if embeds.shape[0] != 1:
        return None
    keep = int(mask[0].sum().item())
    if not bool(mask[0, :keep].all().item()):
        return None
    return embeds[:, :keep], mask[:, :keep]


def trim_padding(conditions: Conditions) -> tuple[Conditions, bool]:
    """The conditions without trailing text padding, and whether all padding could be cut.

    Only when the second value is true may attention run without a mask.
    """
    first = _trimmed(conditions.prompt_embeds, conditions.prompt_attention_mask)
    if first is None:
        return conditions, False
    changes: dict[str, Any] = {"prompt_embeds": first[0], "prompt_attention_mask": first[1]}
    if conditions.negative_prompt_embeds is not None:
        assert conditions.negative_prompt_attention_mask is not None
        second = _trimmed(
            conditions.negative_prompt_embeds, conditions.negative_prompt_attention_mask
        )
        if second is None:
            return conditions, False
        changes.update(negative_prompt_embeds=second[0], negative_prompt_attention_mask=second[1])
    return dataclasses.replace(conditions, **changes), True


class UnmaskedAttnProcessor(HunyuanVideoAttnProcessor2_0):
    """diffusers' HunyuanVideo attention, without the mask while :attr:`unpadded` is set.

    One instance serves every block, so the engine flips one flag per request. Unmasked calls
    go to :attr:`backend` (None: PyTorch's SDPA); masked ones always to SDPA.
    """

    def __init__(self, backend: AttentionBackendName | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.unpadded = False
        self.backend = backend

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> Any:
        if self.unpadded:
            attention_mask = None
        # diffusers' processor reads the backend off itself at each call.
        self._attention_backend = self.backend if self.unpadded else None  # type: ignore[assignment]
        return super().__call__(
            attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb
        )


def install_unmasked_attention(
    transformer: HunyuanVideoTransformer3DModel, attention: str = "auto"
) -> UnmaskedAttnProcessor:
    """Put one :class:`UnmaskedAttnProcessor` in every double- and single-stream block, its
    unmasked calls going to the ``FRAMECAST_ATTENTION`` backend ``attention``."""
    processor = UnmaskedAttnProcessor(ATTENTION_BACKENDS[attention][0])
    for block in transformer_blocks(transformer):
        module: Any = block.attn
        module.set_processor(processor)
    return processor


def compile_blocks(transformer: Any, **options: Any) -> int:
    """``torch.compile`` each repeated transformer block (of either model) in place (regional
    compilation).

    One compiled graph serves all blocks of a class, so compiling takes about as long as for
    one block while the whole stack runs compiled. Returns how many blocks were compiled.
    """
    blocks = transformer_blocks(transformer)
    for block in blocks:
        block.compile(**options)
    return len(blocks)
