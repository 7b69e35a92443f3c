"""The exact fast path: changes that make a step cheaper without changing what it computes.

- Text padding cut: with one prompt per call, the LLaVA text is padded to 256 tokens and the
  transformer masks the padding out. Cutting it (:func:`trim_padding`) removes work and leaves
  every attended token, so nothing the model computes changes.
- No attention mask: once nothing is padded, diffusers still passes an all-true boolean mask
  [B,1,1,N] to every attention call, and with any mask PyTorch's SDPA cannot use its flash
  kernel (and diffusers' flash/sage backends refuse it). :class:`UnmaskedAttnProcessor` passes
  none, but only for calls the engine has marked as unpadded.
- Regional compilation: diffusers' ``compile_repeated_blocks`` matches block classes by name
  and its list lacks the ``TokenReplace*`` blocks the I2V model is made of, so it compiles
  almost nothing. :func:`compile_blocks` compiles every double- and single-stream block.

Each has a CPU test at tiny scale against the stock pipeline (tests/unit/test_hunyuan_speedups.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoAttnProcessor2_0,
    HunyuanVideoTransformer3DModel,
)

from framecast.engines.hunyuan.pipeline import Conditions


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

    One instance serves every block, so the engine flips one flag per request.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.unpadded = False

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
        return super().__call__(
            attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb
        )


def install_unmasked_attention(
    transformer: HunyuanVideoTransformer3DModel,
) -> UnmaskedAttnProcessor:
    """Put one :class:`UnmaskedAttnProcessor` in every double- and single-stream block."""
    processor = UnmaskedAttnProcessor()
    for block in _blocks(transformer):
        attention: Any = block.attn
        attention.set_processor(processor)
    return processor


def compile_blocks(transformer: HunyuanVideoTransformer3DModel, **options: Any) -> int:
    """``torch.compile`` each transformer block in place (regional compilation).

    One compiled graph serves all blocks of a class, so compiling takes about as long as for
    one block while the whole stack runs compiled. Returns how many blocks were compiled.
    """
    blocks = _blocks(transformer)
    for block in blocks:
        block.compile(**options)
    return len(blocks)


def _blocks(transformer: HunyuanVideoTransformer3DModel) -> list[torch.nn.Module]:
    return [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
