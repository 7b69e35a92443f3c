"""HunyuanVideo 1.5's exact path: attention without diffusers' sequence-squared mask.

diffusers 0.42's ``HunyuanVideo15AttnProcessor2_0`` turns the text mask into a [B, 1, S, S]
boolean mask at every attention call (``self_attn_mask_1 & self_attn_mask_2``), which PyTorch
then widens to a float mask of the same size: 12 GiB of booleans and 24 GiB of bf16 per call at
720p with 121 frames (113,585 tokens), and any mask keeps attention off the flash and cuDNN
kernels. Nothing in it is needed:

- The transformer reorders the text tokens so the valid ones come first, zeroes the padding, and
  masks it out of every attention call, in both directions. Valid tokens never see padding, and
  nothing but attention mixes tokens (norms and MLPs act per token; the token refiner has no
  positions), so the video is what it is with the padding cut away before the call:
  :class:`ExactAttention` cuts the Qwen2.5-VL and ByT5 padding at each transformer call (a
  forward pre-hook; a prompt without quoted text keeps no ByT5 token at all). The SigLIP image
  tokens of image-to-video are all valid.
- Once nothing is padded, attention needs no mask, and the calls go to the ``FRAMECAST_ATTENTION``
  backend through the processor the I2V engine uses
  (:class:`~framecast.engines.hunyuan.speedups.UnmaskedAttnProcessor`): without a mask, diffusers'
  HunyuanVideo-I2V processor computes exactly what the 1.5 one does (projections, QK norms,
  rotary embedding of the video tokens, joint attention, output projections).
- Where padding cannot be cut (several sequences of different lengths in one batch, which the
  engine never sends: the guider runs the conditional and unconditional passes one at a time),
  the mask given to attention is the keys' padding only, [B, 1, 1, S]: the valid tokens' rows
  are the stock ones, and the memory grows with S, not S squared.

We set our processor on the transformer rather than fork diffusers' class: the stock one
builds its mask unconditionally, before it reaches attention.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15Transformer3DModel,
)
from torch.utils.hooks import RemovableHandle

from framecast.engines.hunyuan.speedups import ATTENTION_BACKENDS, UnmaskedAttnProcessor

TEXT_INPUTS = (
    ("encoder_hidden_states", "encoder_attention_mask"),  # Qwen2.5-VL
    ("encoder_hidden_states_2", "encoder_attention_mask_2"),  # ByT5, the quoted text
)
"""The transformer's padded inputs: (embeddings, mask) keyword pairs."""


class Hunyuan15AttnProcessor(UnmaskedAttnProcessor):
    """The 1.5 dual-stream blocks' attention: no mask while :attr:`unpadded` is set, else the
    keys' padding only (never a [B, 1, S, S] mask).

    The blocks hand the processor the reordered text mask [B, text tokens] (valid tokens first);
    the video tokens, which come before the text in the joint sequence, are all valid.
    """

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> Any:
        if attention_mask is not None and not self.unpadded:
            text = 0 if encoder_hidden_states is None else encoder_hidden_states.shape[1]
            attention_mask = key_padding_mask(attention_mask, hidden_states.shape[1] + text)
        return super().__call__(
            attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb
        )


def key_padding_mask(text_mask: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[B, 1, 1, seq_len] boolean: every video token, then the text tokens ``text_mask`` keeps."""
    padded = F.pad(text_mask.bool(), (seq_len - text_mask.shape[1], 0), value=True)
    return padded[:, None, None, :]


def cut_padding(inputs: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The transformer's keyword inputs with the text padding cut, and whether it all was.

    Only for one sequence per call: with several, the valid lengths may differ, so nothing is
    cut and the second value is False.
    """
    cut = dict(inputs)
    for embeds_name, mask_name in TEXT_INPUTS:
        embeds, mask = inputs.get(embeds_name), inputs.get(mask_name)
        if embeds is None or mask is None or embeds.shape[0] != 1:
            return dict(inputs), False
        keep = mask[0].bool()
        cut[embeds_name], cut[mask_name] = embeds[:, keep], mask[:, keep]
    return cut, True


class ExactAttention:
    """The exact path, installed on one transformer: every dual-stream block gets one shared
    :class:`Hunyuan15AttnProcessor`, and each call of the transformer first has its padding cut
    (:func:`cut_padding`), which tells the processor whether it may drop the mask."""

    def __init__(self, transformer: HunyuanVideo15Transformer3DModel, attention: str = "auto"):
        self.attention = attention
        self.processor = Hunyuan15AttnProcessor(ATTENTION_BACKENDS[attention][0])
        for block in transformer.transformer_blocks:
            attn: Any = block.attn
            attn.set_processor(self.processor)
        self._hook: RemovableHandle = transformer.register_forward_pre_hook(
            self._cut, with_kwargs=True
        )

    def _cut(
        self, _module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs, self.processor.unpadded = cut_padding(kwargs)
        return args, kwargs
