"""Tencent's official HunyuanVideo 1.5 module names and diffusers' names for the same modules.

The one table of them: the official checkpoint loader (official.py: the super-resolution
transformers, published only in the official layout) and the LoRA reader (lora_formats.py:
LoRAs trained on the official model) both translate through it.

Written from what each official module is (``hyvideo/models/transformers/
hunyuanvideo_1_5_transformer.py`` in Tencent-Hunyuan/HunyuanVideo-1.5, and its ``modules/``)
and what diffusers' ``HunyuanVideo15Transformer3DModel`` calls it; diffusers' conversion script
(``scripts/convert_hunyuan_video1_5_to_diffusers.py``, steps 1-11) was the check. Two modules
are more than a rename: the token refiner's ``self_attn_qkv`` is q, k and v in one layer, which
diffusers keeps as three; the final layer's modulation puts out (shift, scale) where diffusers
reads (scale, shift) (the script's ``swap_scale_shift``). LayerNorms without weights (the
blocks' ``img_norm1``/``img_norm2``, ``final_layer.norm_final``) have nothing to name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import torch

DOUBLE_BLOCKS: Final = "double_blocks"
"""The official ``MMDoubleStreamBlock`` list; diffusers' is ``transformer_blocks``."""
REFINER_BLOCKS: Final = "txt_in.individual_token_refiner.blocks"
"""The official token refiner's blocks; diffusers' are ``context_embedder.token_refiner.
refiner_blocks``."""

DOUBLE_BLOCK: Final[Mapping[str, tuple[str, ...]]] = {
    # MMDoubleStreamBlock -> HunyuanVideo15TransformerBlock (the script's step 10).
    "img_mod.linear": ("norm1.linear",),
    "txt_mod.linear": ("norm1_context.linear",),
    "img_attn_q": ("attn.to_q",),
    "img_attn_k": ("attn.to_k",),
    "img_attn_v": ("attn.to_v",),
    "img_attn_q_norm": ("attn.norm_q",),
    "img_attn_k_norm": ("attn.norm_k",),
    "img_attn_proj": ("attn.to_out.0",),
    "txt_attn_q": ("attn.add_q_proj",),
    "txt_attn_k": ("attn.add_k_proj",),
    "txt_attn_v": ("attn.add_v_proj",),
    "txt_attn_q_norm": ("attn.norm_added_q",),
    "txt_attn_k_norm": ("attn.norm_added_k",),
    "txt_attn_proj": ("attn.to_add_out",),
    "img_mlp.fc1": ("ff.net.0.proj",),
    "img_mlp.fc2": ("ff.net.2",),
    "txt_mlp.fc1": ("ff_context.net.0.proj",),
    "txt_mlp.fc2": ("ff_context.net.2",),
}
REFINER_BLOCK: Final[Mapping[str, tuple[str, ...]]] = {
    # IndividualTokenRefinerBlock -> HunyuanVideo15IndividualTokenRefinerBlock (step 5).
    "norm1": ("norm1",),
    "self_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "self_attn_proj": ("attn.to_out.0",),
    "norm2": ("norm2",),
    "mlp.fc1": ("ff.net.0.proj",),
    "mlp.fc2": ("ff.net.2",),
    "adaLN_modulation.1": ("norm_out.linear",),
}
TOP_LEVEL: Final[Mapping[str, str]] = {
    # Steps 1-4, 6-9 and 11; time_r_in (the MeanFlow models' second timestep) is not in the
    # script, which converts none of those, and is named as time_in is.
    "time_in.mlp.0": "time_embed.timestep_embedder.linear_1",
    "time_in.mlp.2": "time_embed.timestep_embedder.linear_2",
    "time_r_in.mlp.0": "time_embed.timestep_embedder_r.linear_1",
    "time_r_in.mlp.2": "time_embed.timestep_embedder_r.linear_2",
    "txt_in.t_embedder.mlp.0": "context_embedder.time_text_embed.timestep_embedder.linear_1",
    "txt_in.t_embedder.mlp.2": "context_embedder.time_text_embed.timestep_embedder.linear_2",
    "txt_in.c_embedder.linear_1": "context_embedder.time_text_embed.text_embedder.linear_1",
    "txt_in.c_embedder.linear_2": "context_embedder.time_text_embed.text_embedder.linear_2",
    "txt_in.input_embedder": "context_embedder.proj_in",
    "byt5_in.layernorm": "context_embedder_2.norm",
    "byt5_in.fc1": "context_embedder_2.linear_1",
    "byt5_in.fc2": "context_embedder_2.linear_2",
    "byt5_in.fc3": "context_embedder_2.linear_3",
    "vision_in.proj.0": "image_embedder.norm_in",
    "vision_in.proj.1": "image_embedder.linear_1",
    "vision_in.proj.3": "image_embedder.linear_2",
    "vision_in.proj.4": "image_embedder.norm_out",
    "img_in.proj": "x_embedder.proj",
    "cond_type_embedding": "cond_type_embed",
    "final_layer.linear": "proj_out",
    "final_layer.adaLN_modulation.1": "norm_out.linear",
}
SWAPPED: Final = frozenset({"final_layer.adaLN_modulation.1"})
"""Official modules whose output halves diffusers stores the other way round."""


@dataclass(frozen=True)
class Renamed:
    """One official module as diffusers has it."""

    official: str
    targets: tuple[str, ...]
    """diffusers' module, or its q, k and v modules (in that order) for a fused official one."""
    swapped: bool = False
    """The official output halves are (shift, scale), diffusers' (scale, shift)."""

    def rows(self, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The official module's output rows (a weight, a bias, a LoRA ``up``) as each
        target's: cut into equal parts for a fused module, halves swapped where swapped."""
        if self.swapped:
            import torch

            first, second = tensor.chunk(2, dim=0)
            return (torch.cat([second, first], dim=0),)
        if len(self.targets) > 1:
            return tuple(tensor.chunk(len(self.targets), dim=0))
        return (tensor,)


def renamed(
    official: str, double_block: Mapping[str, tuple[str, ...]] = DOUBLE_BLOCK
) -> Renamed | None:
    """The official module ``official`` (e.g. ``double_blocks.3.img_attn_q``) as diffusers has
    it, or None where it is no official module. ``double_block`` is the block table, which a
    caller may extend with names other tools give the blocks' layers."""
    if official in TOP_LEVEL:
        return Renamed(official, (TOP_LEVEL[official],), official in SWAPPED)
    for prefix, table, to in (
        (DOUBLE_BLOCKS, double_block, "transformer_blocks"),
        (REFINER_BLOCKS, REFINER_BLOCK, "context_embedder.token_refiner.refiner_blocks"),
    ):
        if match := re.fullmatch(rf"{re.escape(prefix)}\.(\d+)\.(.+)", official):
            layers = table.get(match[2])
            if layers is None:
                return None
            return Renamed(official, tuple(f"{to}.{match[1]}.{layer}" for layer in layers))
    return None


def official_modules(
    blocks: int, refiner_blocks: int, double_block: Mapping[str, tuple[str, ...]] = DOUBLE_BLOCK
) -> list[str]:
    """Every official module name of a transformer of that depth."""
    names = list(TOP_LEVEL)
    names += [f"{DOUBLE_BLOCKS}.{i}.{layer}" for i in range(blocks) for layer in double_block]
    names += [
        f"{REFINER_BLOCKS}.{i}.{layer}" for i in range(refiner_blocks) for layer in REFINER_BLOCK
    ]
    return names


def block_count(names: Iterable[str], blocks: str) -> int:
    """How many of the block list ``blocks`` (e.g. :data:`REFINER_BLOCKS`) ``names`` (parameter
    or module names) hold."""
    pattern = re.compile(rf"{re.escape(blocks)}\.(\d+)\.")
    return len({int(m[1]) for name in names if (m := pattern.match(name))})
