"""LoRA files in kohya / musubi-tuner's layout, turned into the layout diffusers loads.

musubi-tuner, which many community HunyuanVideo LoRAs are trained with, names each layer it
adapts ``lora_unet_`` + the layer's path in Tencent's official model with every ``.`` made a
``_`` (``lora_unet_double_blocks_0_img_mlp_fc1``), and stores ``lora_down.weight`` [rank, in],
``lora_up.weight`` [out, rank] and ``alpha``: the layer's delta is ``up @ down * alpha / rank``.
diffusers 0.42 sees the official names in these keys but not the layout: its converter splits
the scalar ``alpha`` like the fused q/k/v weights and fails ("chunk expects at least a
1-dimensional tensor").

:func:`musubi_to_diffusers` puts the dots back (an underscore may be a dot or part of a name,
so the name is looked up among the official linear layers of the blocks musubi adapts), folds
``alpha / rank`` into ``up`` (diffusers' HunyuanVideo loader reads no alphas: every layer gets
scale 1) and hands the official layout to diffusers' own converter,
``_convert_hunyuan_video_lora_to_diffusers``, which renames the layers and splits the fused
q/k/v ones. The single-stream blocks' fused ``linear1`` is split here instead: diffusers' converter
splits it at a hidden size of 3072 written into its code, right for the published model only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MUSUBI_PREFIX = "lora_unet_"

_LAYERS = {
    # The linear layers of the official MMDoubleStreamBlock and MMSingleStreamBlock, the two
    # block classes musubi-tuner adapts (hyvideo/modules/models.py).
    "double_blocks": [
        f"{stream}_{layer}"
        for stream in ("img", "txt")
        for layer in ("mod.linear", "attn_qkv", "attn_proj", "mlp.fc1", "mlp.fc2")
    ],
    "single_blocks": ["linear1", "linear2", "modulation.linear"],
}
_BY_UNDERSCORED = {
    block: {layer.replace(".", "_"): layer for layer in layers} for block, layers in _LAYERS.items()
}
_MODULE = re.compile(r"(double_blocks|single_blocks)_(\d+)_(\w+)")
_PARTS = {"lora_down.weight", "lora_up.weight", "alpha"}
_LINEAR1_SPLIT = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
"""diffusers' layers in the official fused ``linear1``, in its order: q, k, v, then the MLP's."""


def is_musubi(keys: Iterable[str]) -> bool:
    return any(key.startswith(MUSUBI_PREFIX) for key in keys)


def official_name(module: str) -> str:
    """``lora_unet_double_blocks_0_img_mlp_fc1`` -> ``double_blocks.0.img_mlp.fc1``."""
    match = _MODULE.fullmatch(module.removeprefix(MUSUBI_PREFIX))
    layer = _BY_UNDERSCORED[match[1]].get(match[3]) if match else None
    if match is None or layer is None:
        raise ValueError(
            f"{module} is not a linear layer of HunyuanVideo's double- or single-stream blocks"
        )
    return f"{match[1]}.{match[2]}.{layer}"


def musubi_to_diffusers(
    state_dict: Mapping[str, torch.Tensor], hidden_size: int
) -> dict[str, torch.Tensor]:
    """The same LoRA in diffusers' keys (``transformer.<module>.lora_A.weight`` and
    ``lora_B.weight``), each layer at scale 1. ``hidden_size`` is the transformer's (3072 for the
    published model): where the single-stream blocks' fused ``linear1`` is split."""
    from diffusers.loaders.lora_conversion_utils import _convert_hunyuan_video_lora_to_diffusers

    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        module, _, part = key.partition(".")
        modules.setdefault(module, {})[part] = value
    original: dict[str, torch.Tensor] = {}
    converted: dict[str, torch.Tensor] = {}
    for module, parts in modules.items():
        name = official_name(module)
        if not {"lora_down.weight", "lora_up.weight"} <= set(parts) <= _PARTS:
            raise ValueError(
                f"{module} has {', '.join(sorted(parts))}; a musubi-tuner LoRA layer has "
                "lora_down.weight, lora_up.weight and alpha"
            )
        down, up = parts["lora_down.weight"], parts["lora_up.weight"]
        rank = down.shape[0]
        # musubi-tuner's rule: no alpha, or 0, means alpha = rank.
        alpha = float(parts["alpha"]) if "alpha" in parts else 0.0
        if alpha and alpha != rank:
            # In float32: the loader then rounds it once, to the model's dtype.
            up = up.float() * (alpha / rank)
        if name.startswith("single_blocks.") and name.endswith(".linear1"):
            converted |= _split_linear1(name, down, up, hidden_size)
        else:
            original[f"{name}.lora_A.weight"] = down
            original[f"{name}.lora_B.weight"] = up
    if original:
        converted |= _convert_hunyuan_video_lora_to_diffusers(original)  # type: ignore[no-untyped-call]
    return converted


def load_into(pipe: Any, path: Path, adapter: str) -> None:
    """HunyuanVideo-I2V's ``lora_loader`` (blocks.py): diffusers' own loader, with a musubi-tuner
    file converted first."""
    config = pipe.transformer.config
    weights = read_for_diffusers(path, config.num_attention_heads * config.attention_head_dim)
    pipe.load_lora_weights(weights, adapter_name=adapter)


def read_for_diffusers(path: Path, hidden_size: int) -> str | dict[str, torch.Tensor]:
    """What to hand ``load_lora_weights`` for the LoRA file at ``path``: the path itself, which
    diffusers reads (its own and the official layout), or a musubi-tuner file's weights in
    diffusers' layout. Only the file's header is read to tell them apart."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    if not is_musubi(keys):
        return str(path)
    return musubi_to_diffusers(load_file(path), hidden_size)


def _split_linear1(
    name: str, down: torch.Tensor, up: torch.Tensor, hidden_size: int
) -> dict[str, torch.Tensor]:
    import torch

    mlp = up.shape[0] - 3 * hidden_size
    if mlp <= 0:
        raise ValueError(
            f"{name} has {up.shape[0]} outputs; this model's fused q, k, v and MLP projection has "
            f"3 x {hidden_size} + the MLP's"
        )
    block = name.removesuffix(".linear1").replace("single_blocks", "single_transformer_blocks")
    out = {}
    parts = torch.split(up, [hidden_size] * 3 + [mlp])
    for layer, part in zip(_LINEAR1_SPLIT, parts, strict=True):
        out[f"transformer.{block}.{layer}.lora_A.weight"] = down
        out[f"transformer.{block}.{layer}.lora_B.weight"] = part
    return out
