"""Loading a transformer in Tencent's own HunyuanVideo 1.5 layout into diffusers' class.

The super-resolution transformers (``transformer/720p_sr_distilled``,
``transformer/1080p_sr_distilled`` in ``tencent/HunyuanVideo-1.5``) are published only in the
official layout: a ``config.json`` of ``HunyuanVideo_1_5_DiffusionTransformer``'s arguments and
safetensors with its parameter names. They are the 8.3B architecture diffusers implements as
``HunyuanVideo15Transformer3DModel``, with more input channels, so we translate the config's
names and the weights' names and load them into diffusers' class.

The translation is ours, written from what each official module is (``hyvideo/models/
transformers/hunyuanvideo_1_5_transformer.py`` and its ``modules/``) and what diffusers calls
it; diffusers' own conversion script (``scripts/convert_hunyuan_video1_5_to_diffusers.py``)
was the check. Three things are more than a rename: the token refiner's fused ``self_attn_qkv``
is split into q, k and v; the final layer's modulation is stored (shift, scale) where diffusers
reads (scale, shift); the official 54-block count and refiner depth come from the weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import torch
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15Transformer3DModel,
)

from framecast.engines.hunyuan.weights import WeightsError
from framecast.models.hunyuan15_i2v import BUCKET_BASE, SR_CHECKPOINTS

TARGET_SIZE: Final = {**BUCKET_BASE, **{c.resolution: c.bucket_base for c in SR_CHECKPOINTS}}
"""Official ``ideal_resolution`` -> diffusers' ``target_size`` (the bucket base, official
``SizeMap`` in ``hyvideo/pipelines/hunyuan_video_sr_pipeline.py``)."""

_RENAMES: Final = (
    # (official pattern, diffusers replacement), tried in order; the first that matches wins.
    (r"^time_in\.mlp\.0\.", "time_embed.timestep_embedder.linear_1."),
    (r"^time_in\.mlp\.2\.", "time_embed.timestep_embedder.linear_2."),
    (r"^time_r_in\.mlp\.0\.", "time_embed.timestep_embedder_r.linear_1."),
    (r"^time_r_in\.mlp\.2\.", "time_embed.timestep_embedder_r.linear_2."),
    (r"^txt_in\.t_embedder\.mlp\.0\.", "context_embedder.time_text_embed.timestep_embedder.linear_1."),
    (r"^txt_in\.t_embedder\.mlp\.2\.", "context_embedder.time_text_embed.timestep_embedder.linear_2."),
    (r"^txt_in\.c_embedder\.", "context_embedder.time_text_embed.text_embedder."),
    (r"^txt_in\.input_embedder\.", "context_embedder.proj_in."),
    (r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.self_attn_proj\.", r"context_embedder.token_refiner.refiner_blocks.\1.attn.to_out.0."),
    (r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.mlp\.fc1\.", r"context_embedder.token_refiner.refiner_blocks.\1.ff.net.0.proj."),
    (r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.mlp\.fc2\.", r"context_embedder.token_refiner.refiner_blocks.\1.ff.net.2."),
    (r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.adaLN_modulation\.1\.", r"context_embedder.token_refiner.refiner_blocks.\1.norm_out.linear."),
    (r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.(norm[12])\.", r"context_embedder.token_refiner.refiner_blocks.\1.\2."),
    (r"^byt5_in\.layernorm\.", "context_embedder_2.norm."),
    (r"^byt5_in\.fc([123])\.", r"context_embedder_2.linear_\1."),
    (r"^vision_in\.proj\.0\.", "image_embedder.norm_in."),
    (r"^vision_in\.proj\.1\.", "image_embedder.linear_1."),
    (r"^vision_in\.proj\.3\.", "image_embedder.linear_2."),
    (r"^vision_in\.proj\.4\.", "image_embedder.norm_out."),
    (r"^img_in\.proj\.", "x_embedder.proj."),
    (r"^cond_type_embedding\.", "cond_type_embed."),
    (r"^double_blocks\.(\d+)\.img_mod\.linear\.", r"transformer_blocks.\1.norm1.linear."),
    (r"^double_blocks\.(\d+)\.txt_mod\.linear\.", r"transformer_blocks.\1.norm1_context.linear."),
    (r"^double_blocks\.(\d+)\.img_attn_([qkv])\.", r"transformer_blocks.\1.attn.to_\2."),
    (r"^double_blocks\.(\d+)\.img_attn_([qk])_norm\.", r"transformer_blocks.\1.attn.norm_\2."),
    (r"^double_blocks\.(\d+)\.img_attn_proj\.", r"transformer_blocks.\1.attn.to_out.0."),
    (r"^double_blocks\.(\d+)\.txt_attn_([qkv])\.", r"transformer_blocks.\1.attn.add_\2_proj."),
    (r"^double_blocks\.(\d+)\.txt_attn_([qk])_norm\.", r"transformer_blocks.\1.attn.norm_added_\2."),
    (r"^double_blocks\.(\d+)\.txt_attn_proj\.", r"transformer_blocks.\1.attn.to_add_out."),
    (r"^double_blocks\.(\d+)\.img_mlp\.fc1\.", r"transformer_blocks.\1.ff.net.0.proj."),
    (r"^double_blocks\.(\d+)\.img_mlp\.fc2\.", r"transformer_blocks.\1.ff.net.2."),
    (r"^double_blocks\.(\d+)\.txt_mlp\.fc1\.", r"transformer_blocks.\1.ff_context.net.0.proj."),
    (r"^double_blocks\.(\d+)\.txt_mlp\.fc2\.", r"transformer_blocks.\1.ff_context.net.2."),
    (r"^final_layer\.linear\.", "proj_out."),
)  # fmt: skip
_COMPILED: Final = tuple((re.compile(pattern), to) for pattern, to in _RENAMES)
_FUSED_QKV: Final = re.compile(r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.self_attn_qkv\.")
_FINAL_MODULATION: Final = re.compile(r"^final_layer\.adaLN_modulation\.1\.")


def diffusers_config(official: Mapping[str, Any], state_keys: set[str]) -> dict[str, Any]:
    """diffusers' ``HunyuanVideo15Transformer3DModel`` arguments for an official config.json
    (and the weights' names, which tell the refiner depth)."""
    try:
        heads = int(official["heads_num"])
        patch = list(official.get("patch_size", [1, 1, 1]))
        refiner_blocks = {
            int(m.group(1))
            for k in state_keys
            if (m := re.match(r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.", k))
        }
        return {
            "in_channels": int(official["in_channels"]),
            "out_channels": int(official.get("out_channels") or official["in_channels"]),
            "num_attention_heads": heads,
            "attention_head_dim": int(official["hidden_size"]) // heads,
            "num_layers": int(official["mm_double_blocks_depth"]),
            "num_refiner_layers": len(refiner_blocks) or 2,
            "mlp_ratio": float(official.get("mlp_width_ratio", 4.0)),
            "patch_size_t": int(patch[0]),
            "patch_size": int(patch[1]),
            "qk_norm": "rms_norm",  # the official qk_norm_type "rms"
            "text_embed_dim": int(official["text_states_dim"]),
            "text_embed_2_dim": 1472,  # official ByT5Mapper in_dim, fixed in its code
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


def official_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official transformer weights under diffusers' names (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := _FUSED_QKV.match(key):
            prefix = f"context_embedder.token_refiner.refiner_blocks.{m.group(1)}.attn."
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[prefix + f"to_{name}." + key[m.end() :]] = part
            continue
        if m := _FINAL_MODULATION.match(key):
            shift, scale = value.chunk(2, dim=0)
            out["norm_out.linear." + key[m.end() :]] = torch.cat([scale, shift], dim=0)
            continue
        for pattern, to in _COMPILED:
            renamed, hits = pattern.subn(to, key, count=1)
            if hits:
                out[renamed] = value
                break
        else:
            out[key] = value  # left for load_state_dict to name as unexpected
    return out


def load_official_transformer(folder: Path, dtype: torch.dtype) -> HunyuanVideo15Transformer3DModel:
    """An official-layout transformer folder as diffusers' model, in ``dtype``, eval mode."""
    from safetensors.torch import load_file

    try:
        official = json.loads((folder / "config.json").read_text())
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors in {folder}")
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(file))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read the transformer in {folder}: {exc}") from exc
    config = diffusers_config(official, set(state))
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
