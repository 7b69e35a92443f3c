"""Loading a transformer in Tencent's own HunyuanVideo 1.5 layout into diffusers' class.

The super-resolution transformers (``transformer/720p_sr_distilled``,
``transformer/1080p_sr_distilled`` in ``tencent/HunyuanVideo-1.5``) are published only in the
official layout: a ``config.json`` of ``HunyuanVideo_1_5_DiffusionTransformer``'s arguments and
safetensors with its parameter names. They are the 8.3B architecture diffusers implements as
``HunyuanVideo15Transformer3DModel``, with more input channels, so we translate the config's
names and the weights' names and load them into diffusers' class.

The weights' names are translated through engines/hunyuan15/official_names.py (the one table of
official and diffusers names, which the LoRA reader shares); the official 54-block count and the
refiner's depth come from the config and the weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import torch
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15Transformer3DModel,
)

from framecast.engines.hunyuan.weights import WeightsError
from framecast.engines.hunyuan15.official_names import REFINER_BLOCKS, block_count, renamed
from framecast.models.hunyuan15_i2v import BUCKET_BASE, SR_CHECKPOINTS

TARGET_SIZE: Final = {**BUCKET_BASE, **{c.resolution: c.bucket_base for c in SR_CHECKPOINTS}}
"""Official ``ideal_resolution`` -> diffusers' ``target_size`` (the bucket base, official
``SizeMap`` in ``hyvideo/pipelines/hunyuan_video_sr_pipeline.py``)."""


def diffusers_config(
    official: Mapping[str, Any], state: Mapping[str, torch.Tensor]
) -> dict[str, Any]:
    """diffusers' ``HunyuanVideo15Transformer3DModel`` arguments for an official config.json
    (and the weights, which tell the refiner's depth and ByT5's width)."""
    try:
        heads = int(official["heads_num"])
        patch = list(official.get("patch_size", [1, 1, 1]))
        latent = int(official["in_channels"])
        byt5 = state.get("byt5_in.fc1.weight")
        return {
            "in_channels": input_channels(official),
            "out_channels": int(official.get("out_channels") or latent),
            "num_attention_heads": heads,
            "attention_head_dim": int(official["hidden_size"]) // heads,
            "num_layers": int(official["mm_double_blocks_depth"]),
            "num_refiner_layers": block_count(state, REFINER_BLOCKS) or 2,
            "mlp_ratio": float(official.get("mlp_width_ratio", 4.0)),
            "patch_size_t": int(patch[0]),
            "patch_size": int(patch[1]),
            "qk_norm": "rms_norm",  # the official qk_norm_type "rms"
            "text_embed_dim": int(official["text_states_dim"]),
            # The official ByT5Mapper's in_dim is fixed in its code (1472) and in no config.
            "text_embed_2_dim": 1472 if byt5 is None else int(byt5.shape[1]),
            "image_embed_dim": int(official["vision_states_dim"]),
            "rope_theta": float(official.get("rope_theta", 256)),
            "rope_axes_dim": tuple(official["rope_dim_list"]),
            "use_meanflow": bool(official.get("use_meanflow", False)),
            "target_size": TARGET_SIZE[str(official.get("ideal_resolution", "720p"))],
            "task_type": str(official.get("ideal_task") or "i2v"),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(
            f"not an official HunyuanVideo 1.5 transformer config ({type(exc).__name__}: {exc})"
        ) from exc


def input_channels(official: Mapping[str, Any]) -> int:
    """The channels the official patch embedding takes, diffusers' ``in_channels``: the
    config's ``in_channels`` is the latent's, and with ``concat_condition`` (its default) the
    official ``PatchEmbed`` (``hyvideo/models/transformers/modules/embed_layers.py``) widens it
    for the image condition and its mask, 2c + 1 (c + c // 2 + 1 with
    ``is_reshape_temporal_channels``)."""
    channels = int(official["in_channels"])
    if not official.get("concat_condition", True):
        return channels
    if official.get("is_reshape_temporal_channels", False):
        return channels + channels // 2 + 1
    return 2 * channels + 1


def official_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official transformer weights under diffusers' names (see official_names.py)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, parameter = key.rpartition(".")
        layer = renamed(module)
        if layer is None:
            out[key] = value  # left for load_state_dict to name as unexpected
            continue
        for target, rows in zip(layer.targets, layer.rows(value), strict=True):
            out[f"{target}.{parameter}"] = rows
    return out


def read_folder(folder: Path, what: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An official checkpoint folder's ``config.json`` and the tensors of all its safetensors
    files (the transformers and the upsamplers alike); :class:`WeightsError` naming ``what``."""
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / "config.json").read_text())
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors in {folder}")
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(file))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read the {what} in {folder}: {exc}") from exc
    return config, state


def load_official_transformer(folder: Path, dtype: torch.dtype) -> HunyuanVideo15Transformer3DModel:
    """An official-layout transformer folder as diffusers' model, in ``dtype``, eval mode."""
    official, state = read_folder(folder, "transformer")
    config = diffusers_config(official, state)
    with torch.device("meta"):
        model = HunyuanVideo15Transformer3DModel(**config)
    try:
        model.load_state_dict(official_to_diffusers(state), strict=True, assign=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"the transformer weights in {folder} do not fit its config: {exc}"
        ) from exc
    loaded: HunyuanVideo15Transformer3DModel = model.to(dtype=dtype).eval()
    return loaded
