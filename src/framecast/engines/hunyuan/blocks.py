"""What the speed-ups shared by the Hunyuan engines need to know of each model's transformer.

``engines/hunyuan/`` is the home of what HunyuanVideo-I2V and HunyuanVideo 1.5 share: device
placement, the attention kernels, and the speed-ups, each written once (FP8 linears, fp8.py;
regional compilation, speedups.py; step caching, cache.py; one request on several GPUs,
parallel.py and group.py). Those modules know nothing of either model: they take what differs,
the transformer's block lists, the classes in them, the names of its modulation layers and of
its text input, how its LoRA files are read (loras.py), where its sequence is split
(:class:`SequenceSplit`), from a
:class:`TransformerSpec`, one per
model (:data:`HUNYUAN_I2V`, :data:`HUNYUAN_15`), found by the transformer's class
(:func:`spec_of`), so a caller hands them the transformer alone. Both rows are here, rather than
each in its own engine's package, so that finding one never depends on which engine module was
imported first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoTokenReplaceSingleTransformerBlock,
    HunyuanVideoTokenReplaceTransformerBlock,
    HunyuanVideoTransformer3DModel,
)
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15Transformer3DModel,
    HunyuanVideo15TransformerBlock,
)

from framecast.models.base import deferred


@dataclass(frozen=True)
class SequenceSplit:
    """Where a transformer's sequence is cut across a process group (engines/hunyuan/parallel.py
    makes diffusers' context-parallel plan of it): the module names of its image tokens, text
    tokens, rotary tables and output projection."""

    text: str
    """The module whose output is the text tokens [B, text tokens, C], or, with
    :attr:`text_argument`, the module that takes them as that argument (split before it runs)."""
    text_argument: str | None
    text_inputs: tuple[str, ...]
    """The transformer's keywords whose token counts add up to the text tokens at :attr:`text`:
    what decides, before a pass, whether its sequence divides by the group."""
    image: str = "x_embedder"
    """The module whose output is the image tokens [B, image tokens, C]."""
    rotary: str = "rope"
    """The module whose (cos, sin) output [image tokens, D] goes with the image tokens."""
    output: str = "proj_out"
    """The projection whose output [B, image tokens, C] is gathered back whole."""
    first_frame_argument: tuple[str, int] | None = None
    """(keyword, position) of the blocks' count of first-frame tokens, which is global and must
    become each rank's own; None: the blocks take none."""


@dataclass(frozen=True)
class TransformerSpec:
    """One model's transformer, as the shared speed-ups see it."""

    model: str
    """The model's name, for messages."""
    transformer_class: type[torch.nn.Module]
    lora_loader: Callable[[Any, Path, str], None]
    """``(pipe, path, adapter_name)``: reads the LoRA file at ``path``, in any layout this model's
    LoRAs come in, into ``pipe.transformer`` as the PEFT adapter ``adapter_name``
    (engines/hunyuan/loras.py does the rest, the same for every model)."""
    block_lists: tuple[str, ...]
    """The transformer's ``ModuleList`` attributes that hold its repeated blocks, in the order a
    pass runs them: what is compiled, converted to FP8 and step-cached."""
    block_classes: tuple[type[torch.nn.Module], ...]
    """The classes in those lists. diffusers' cache hooks look each up in its
    ``TransformerBlockRegistry`` (cache.py registers those it lacks)."""
    sequence_split: SequenceSplit
    block_outputs: tuple[str, ...] = ("hidden_states", "encoder_hidden_states")
    """What a block returns, in order (the same names as its first two arguments)."""
    modulation: tuple[str, ...] = ("norm",)
    """Name prefixes, within a block, of the submodules whose linear layers compute the
    modulation from the timestep: one row per call, left in bf16 by ``FRAMECAST_LINEAR=fp8``
    (``fp8-weight`` converts them too)."""
    text_input: str = "encoder_hidden_states"
    """The transformer's keyword for the prompt's embeddings, which tell a pass of true CFG's
    conditional branch from one of its unconditional branch."""

    def blocks(self, transformer: Any) -> list[torch.nn.Module]:
        """Every repeated block of ``transformer``, in the order a pass runs them."""
        return [block for name in self.block_lists for block in getattr(transformer, name)]


HUNYUAN_I2V = TransformerSpec(
    model="HunyuanVideo-I2V",
    transformer_class=HunyuanVideoTransformer3DModel,
    lora_loader=deferred("framecast.engines.hunyuan.lora_formats:load_into"),
    # diffusers' own regional compilation matches block classes by name, and its list lacks
    # the TokenReplace blocks the I2V model is made of; naming the lists covers them.
    block_lists=("transformer_blocks", "single_transformer_blocks"),
    block_classes=(
        HunyuanVideoTokenReplaceTransformerBlock,
        HunyuanVideoTokenReplaceSingleTransformerBlock,
    ),
    # The token refiner (context_embedder) runs on the whole text; its output is split. The
    # blocks' 7th argument, num_tokens, is the first frame's token count.
    sequence_split=SequenceSplit(
        text="context_embedder",
        text_argument=None,
        text_inputs=("encoder_hidden_states",),
        first_frame_argument=("num_tokens", 6),
    ),
)
"""HunyuanVideo-I2V: 20 double-stream blocks, then 40 single-stream ones (norm1, norm1_context
and norm hold the modulation)."""

HUNYUAN_15 = TransformerSpec(
    model="HunyuanVideo 1.5",
    transformer_class=HunyuanVideo15Transformer3DModel,
    lora_loader=deferred("framecast.engines.hunyuan15.lora_formats:load_into"),
    block_lists=("transformer_blocks",),
    block_classes=(HunyuanVideo15TransformerBlock,),
    # The text stream the blocks see is built inside forward() (SigLIP image tokens, then the
    # ByT5 and the Qwen2.5-VL tokens, valid ones first) from no single module's output: it is
    # split as the first block's input, after the token refiner has run on the whole text.
    sequence_split=SequenceSplit(
        text="transformer_blocks.0",
        text_argument="encoder_hidden_states",
        text_inputs=("encoder_hidden_states", "encoder_hidden_states_2", "image_embeds"),
    ),
)
"""HunyuanVideo 1.5: 54 dual-stream blocks (norm1 and norm1_context hold the modulation). Its
patch embedder and token refiner, which diffusers' ``compile_repeated_blocks`` also compiles,
run once per pass on few tokens (the refiner on the text alone) and are left eager."""

SPECS: tuple[TransformerSpec, ...] = (HUNYUAN_I2V, HUNYUAN_15)


def spec_of(transformer: Any) -> TransformerSpec:
    """The spec of ``transformer``'s model, or a TypeError naming the class if none fits."""
    for spec in SPECS:
        if isinstance(transformer, spec.transformer_class):
            return spec
    raise TypeError(
        f"no Hunyuan transformer spec for {type(transformer).__name__}; known: "
        + ", ".join(spec.transformer_class.__name__ for spec in SPECS)
    )


def transformer_blocks(transformer: Any) -> list[torch.nn.Module]:
    """Every repeated block of ``transformer`` (of either model): what each speed-up works on."""
    return spec_of(transformer).blocks(transformer)
