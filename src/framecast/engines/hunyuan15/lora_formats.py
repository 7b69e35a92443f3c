"""HunyuanVideo 1.5's LoRA files, in the layouts its trainers write, read into diffusers' names.

diffusers 0.42 has no LoRA loader for 1.5 (huggingface/diffusers#14420), so :func:`load_into`
(this model's ``lora_loader``, engines/hunyuan/blocks.py) reads a file here into
:class:`~framecast.engines.hunyuan.lora_peft.LayerLora` values keyed by the diffusers transformer's
module names, and engines/hunyuan/lora_peft.py injects them with PEFT. The layouts:

- diffusers/PEFT: ``transformer.<diffusers module>.lora_A.weight`` and ``lora_B.weight`` (also
  bare, or after PEFT's ``base_model.model.``), rank and alpha in the ``lora_adapter_metadata``
  header diffusers writes;
- Tencent's training code (HunyuanVideo-1.5 ``train.py``: a PEFT ``LoraConfig``, "all-linear"
  by default, on the official transformer): the official module names
  (``double_blocks.0.img_attn_q``, ``txt_in.individual_token_refiner.blocks.0.self_attn_qkv``,
  ``final_layer.linear``, ...) with PEFT's ``lora_A``/``lora_B``;
- musubi-tuner (``networks/lora_hv_1_5.py``: the linear layers of the official
  ``MMDoubleStreamBlock``): ``lora_unet_`` + the official name with every ``.`` a ``_``, with
  ``lora_down``/``lora_up`` and ``alpha``;
- ComfyUI: ``diffusion_model.`` + the official names (what musubi-tuner's ``convert_lora.py``
  writes for it), or + ComfyUI's own module names, which diffusion-pipe writes since it trains
  ComfyUI's model (``models/hunyuan_video_15.py``, adapting its flux-style ``DoubleStreamBlock``):
  ``img_attn.qkv`` (q, k and v fused), ``img_attn.proj``, ``img_mlp.0``/``.2``, ``img_mod.lin``.
  ComfyUI maps those back to the official names the same way (``comfy/lora.py``, its
  HunyuanVideo key map), so they are read here as the official ones.

A layer's alpha is its ``alpha`` key where it has one (kohya's rule, musubi-tuner's too: 0 means
the rank), else the header's ``lora_alpha``, else its rank (the diffusers/PEFT convention: scale
1). A fused layer (official ``*_qkv``) is split: its ``down`` shared, its ``up`` cut in three.
The official final modulation stores (shift, scale) where diffusers stores (scale, shift)
(diffusers' ``scripts/convert_hunyuan_video1_5_to_diffusers.py``, ``swap_scale_shift``): its
``up`` rows are swapped to match. The official names, diffusers' for them, and which layers
are fused or swapped are engines/hunyuan15/official_names.py's, which the official checkpoint
loader (official.py) reads too.

A file for another model is refused saying so: one with single-stream blocks (HunyuanVideo v1,
Flux), one in Wan's layout, one that adapts layers this transformer lacks or of other shapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from framecast.engines.hunyuan.lora_peft import LayerLora, inject
from framecast.engines.hunyuan15.official_names import (
    DOUBLE_BLOCK,
    Renamed,
    official_modules,
    renamed,
)

if TYPE_CHECKING:
    import torch

FUSED_DOUBLE_BLOCK: Final[Mapping[str, tuple[str, ...]]] = {
    **DOUBLE_BLOCK,
    # ComfyUI's fused layers, once COMFY_NAMES has named them the official way (1.5's own
    # blocks keep q, k and v apart).
    "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
COMFY_NAMES: Final[tuple[tuple[str, str], ...]] = (
    # ComfyUI's module names -> the official ones (comfy/lora.py's HunyuanVideo key map, and
    # ComfyUI's MLPEmbedder's in_layer/out_layer for the official mlp.0/mlp.2, linear_1/_2).
    (r"_mod\.lin$", "_mod.linear"),
    (r"_attn\.qkv$", "_attn_qkv"),
    (r"_attn\.proj$", "_attn_proj"),
    (r"_mlp\.0$", "_mlp.fc1"),
    (r"_mlp\.2$", "_mlp.fc2"),
    (r"(refiner\.blocks\.\d+)\.self_attn\.(qkv|proj)$", r"\1.self_attn_\2"),
    (r"(refiner\.blocks\.\d+)\.mlp\.0$", r"\1.mlp.fc1"),
    (r"(refiner\.blocks\.\d+)\.mlp\.2$", r"\1.mlp.fc2"),
    (r"^(time_in|txt_in\.t_embedder)\.in_layer$", r"\1.mlp.0"),
    (r"^(time_in|txt_in\.t_embedder)\.out_layer$", r"\1.mlp.2"),
    (r"^txt_in\.c_embedder\.in_layer$", "txt_in.c_embedder.linear_1"),
    (r"^txt_in\.c_embedder\.out_layer$", "txt_in.c_embedder.linear_2"),
)
PREFIXES: Final = ("transformer.", "diffusion_model.", "base_model.model.")
MUSUBI_PREFIX: Final = "lora_unet_"
_KEY = re.compile(
    r"(?P<module>.+?)\.(?P<part>lora_A\.weight|lora_B\.weight|lora_down\.weight|lora_up\.weight|alpha)"
)
_DOWN = ("lora_A.weight", "lora_down.weight")
_UP = ("lora_B.weight", "lora_up.weight")
_OTHER_MODELS: Final = (
    (
        re.compile(r"single_blocks|single_transformer_blocks"),
        "it adapts single-stream blocks, which HunyuanVideo 1.5 does not have: a LoRA for "
        "HunyuanVideo (v1) or Flux",
    ),
    (
        re.compile(
            r"(^|[._])(self_attn[._][qkvo]\b|cross_attn|ffn[._]\d|attn[12][._]|condition_embedder)"
        ),
        "its layers are named as Wan's (self_attn, cross_attn, ffn): a Wan LoRA",
    ),
)


def load_into(pipe: Any, path: Path, adapter: str) -> None:
    """HunyuanVideo 1.5's ``lora_loader`` (blocks.py): the file at ``path``, in any layout above,
    as the PEFT adapter ``adapter`` of ``pipe.transformer``."""
    inject(pipe.transformer, read_lora(path, pipe.transformer), adapter)


def read_lora(path: Path, transformer: Any) -> dict[str, LayerLora]:
    """The LoRA file at ``path`` as layers of ``transformer`` (its diffusers module names), or a
    ValueError saying why it is not a LoRA for it."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        metadata = f.metadata() or {}
    refuse_other_models(keys)
    from safetensors.torch import load_file

    return to_diffusers(load_file(path), transformer, header_alpha(metadata))


def refuse_other_models(keys: Iterable[str]) -> None:
    """A ValueError naming the model a file is for, where its keys tell it is another's."""
    for key in keys:
        for pattern, reason in _OTHER_MODELS:
            if pattern.search(key):
                raise ValueError(f"{reason} ({key})")


def header_alpha(metadata: Mapping[str, str]) -> float | None:
    """``lora_alpha`` from the ``lora_adapter_metadata`` header diffusers writes (its keys
    prefixed ``transformer.`` by a pipeline's ``save_lora_weights``, bare by a model's
    ``save_lora_adapter``), or None."""
    raw = metadata.get("lora_adapter_metadata")
    if raw is None:
        return None
    config = json.loads(raw)
    alpha = config.get("transformer.lora_alpha", config.get("lora_alpha"))
    return None if alpha is None else float(alpha)


def to_diffusers(
    state_dict: Mapping[str, torch.Tensor], transformer: Any, default_alpha: float | None = None
) -> dict[str, LayerLora]:
    """``state_dict``, in any layout above, as layers of ``transformer``."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        match = _KEY.fullmatch(key)
        if match is None:
            raise ValueError(
                f"{key} is not a LoRA weight (lora_A/lora_B, lora_down/lora_up or alpha): "
                "LoKr, LoHa, DoRA and full-weight diffs are not supported"
            )
        modules.setdefault(match["module"], {})[match["part"]] = value
    names = Names(transformer)
    out: dict[str, LayerLora] = {}
    for module, parts in modules.items():
        down = next((parts[p] for p in _DOWN if p in parts), None)
        up = next((parts[p] for p in _UP if p in parts), None)
        if down is None or up is None:
            raise ValueError(f"{module} has {', '.join(sorted(parts))} but not both LoRA matrices")
        rank = down.shape[0]
        alpha = float(parts["alpha"]) if "alpha" in parts else (default_alpha or 0.0)
        layer_alpha = alpha or float(rank)  # kohya's and musubi-tuner's rule: 0 means the rank
        layer = names.targets(module)
        if len(layer.targets) > 1 and up.shape[0] % len(layer.targets):
            raise ValueError(
                f"{module} has {up.shape[0]} outputs, not {len(layer.targets)} equal parts"
            )
        for target, part in zip(layer.targets, layer.rows(up), strict=True):
            out[target] = LayerLora(down, part.contiguous(), layer_alpha)
    return out


class Names:
    """A LoRA file's module names, in any layout, resolved to one transformer's linear layers."""

    def __init__(self, transformer: Any) -> None:
        self.linears = {
            name for name, module in transformer.named_modules() if hasattr(module, "in_features")
        }
        official = official_modules(
            len(transformer.transformer_blocks),
            len(transformer.context_embedder.token_refiner.refiner_blocks),
            FUSED_DOUBLE_BLOCK,
        )
        self.underscored = {name.replace(".", "_"): name for name in official}

    def targets(self, module: str) -> Renamed:
        """The diffusers layers ``module`` adapts (and whether its output halves are swapped)."""
        name = module
        for prefix in PREFIXES:
            name = name.removeprefix(prefix)
        if name in self.linears:
            return Renamed(name, (name,))
        if name.startswith(MUSUBI_PREFIX):
            name = self.underscored.get(name.removeprefix(MUSUBI_PREFIX), name)
        for pattern, replacement in COMFY_NAMES:
            name = re.sub(pattern, replacement, name)
        layer = renamed(name, FUSED_DOUBLE_BLOCK)
        if layer is None or any(t not in self.linears for t in layer.targets):
            raise ValueError(
                f"it adapts {module}, which HunyuanVideo 1.5's transformer does not have "
                "(is it a LoRA for another model?)"
            )
        return layer
