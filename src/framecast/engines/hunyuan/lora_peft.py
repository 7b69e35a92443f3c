"""A LoRA's layers as typed values, and their injection into a transformer with PEFT.

For a model diffusers has no LoRA loader for (HunyuanVideo 1.5: huggingface/diffusers#14420) the
model's reader (engines/hunyuan15/lora_formats.py) turns a file into :class:`LayerLora` values
keyed by the transformer's own module names, and :func:`inject` adds them as one PEFT adapter
(``inject_adapter_in_model``, then ``set_peft_model_state_dict``), with each layer's own rank and
alpha, as diffusers' loader would. The adapter is then an ordinary PEFT adapter that
engines/hunyuan/loras.py switches, stages and deletes like any other.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LayerLora:
    """One linear layer's LoRA: its delta is ``up @ down * alpha / rank``."""

    down: torch.Tensor
    """A, [rank, in]."""
    up: torch.Tensor
    """B, [out, rank]."""
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])


def inject(transformer: Any, layers: Mapping[str, LayerLora], adapter: str) -> None:
    """Add ``layers`` (keyed by ``transformer``'s module names) as the PEFT adapter ``adapter``.

    Raises ValueError, naming the layer, for a module the transformer lacks or one of another
    shape: a LoRA made for another model, or another size of this one."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    if not layers:
        raise ValueError("the file holds no LoRA layers")
    modules = dict(transformer.named_modules())
    for name, layer in layers.items():
        module = modules.get(name)
        if module is None or not hasattr(module, "in_features"):
            raise ValueError(f"it adapts {name}, which is not a linear layer of this transformer")
        wanted = (module.out_features, module.in_features)
        got = (layer.up.shape[0], layer.down.shape[1])
        if got != wanted or layer.up.shape[1] != layer.rank:
            raise ValueError(
                f"its {name} maps {got[1]} to {got[0]} features, this transformer's "
                f"{wanted[1]} to {wanted[0]}: a LoRA made for another model (or another size)"
            )
    # The most common rank and alpha as the config's, the others per layer, as diffusers does.
    rank = Counter(layer.rank for layer in layers.values()).most_common(1)[0][0]
    alpha = Counter(layer.alpha for layer in layers.values()).most_common(1)[0][0]
    config = LoraConfig(
        r=rank,
        # Annotated int, but PEFT only divides it by the rank: a file's alpha may be fractional.
        lora_alpha=alpha,  # type: ignore[arg-type]
        target_modules=sorted(layers),
        rank_pattern={_exactly(n): layer.rank for n, layer in layers.items() if layer.rank != rank},
        alpha_pattern={
            _exactly(n): layer.alpha for n, layer in layers.items() if layer.alpha != alpha
        },
    )
    inject_adapter_in_model(config, transformer, adapter_name=adapter)
    state = {}
    for name, layer in layers.items():
        state[f"{name}.lora_A.weight"] = layer.down
        state[f"{name}.lora_B.weight"] = layer.up
    result = set_peft_model_state_dict(transformer, state, adapter_name=adapter)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise ValueError(f"PEFT did not place {', '.join(unexpected[:3])}")


def _exactly(name: str) -> str:
    # PEFT matches a pattern as a regex against the end of a module name after any prefix
    # (peft.utils.other.get_pattern_key): anchored and escaped, "norm_out.linear" is the
    # top-level layer only, not also every refiner block's.
    return "^" + re.escape(name)
