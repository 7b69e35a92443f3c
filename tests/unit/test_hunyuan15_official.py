"""The official HunyuanVideo 1.5 transformer layout (the SR checkpoints' only one) loads into
diffusers' model as the same model: a tiny transformer written out as Tencent publishes one
(``config.json`` of ``HunyuanVideo_1_5_DiffusionTransformer``'s arguments, safetensors under the
official module names), read back by :func:`load_official_transformer`.

The writing is the reverse of engines/hunyuan15/official_names.py, written out here from the
official model's attribute names (``hyvideo/models/transformers/hunyuanvideo_1_5_transformer.py``
and its ``modules/``), so that a wrong name or a missed fuse or swap there fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

import torch
from safetensors.torch import save_file

from framecast.engines.hunyuan15.official import load_official_transformer
from framecast.engines.hunyuan15.tiny import build_tiny_pipeline, build_tiny_sr
from framecast.models.hunyuan15_i2v import SR_CHECKPOINTS

from .tiny_inputs import transformer15_inputs

# diffusers module -> the official one, outside the blocks.
TOP = {
    "x_embedder.proj": "img_in.proj",
    "time_embed.timestep_embedder.linear_1": "time_in.mlp.0",
    "time_embed.timestep_embedder.linear_2": "time_in.mlp.2",
    "time_embed.timestep_embedder_r.linear_1": "time_r_in.mlp.0",
    "time_embed.timestep_embedder_r.linear_2": "time_r_in.mlp.2",
    "context_embedder.time_text_embed.timestep_embedder.linear_1": "txt_in.t_embedder.mlp.0",
    "context_embedder.time_text_embed.timestep_embedder.linear_2": "txt_in.t_embedder.mlp.2",
    "context_embedder.time_text_embed.text_embedder.linear_1": "txt_in.c_embedder.linear_1",
    "context_embedder.time_text_embed.text_embedder.linear_2": "txt_in.c_embedder.linear_2",
    "context_embedder.proj_in": "txt_in.input_embedder",
    "context_embedder_2.norm": "byt5_in.layernorm",
    "context_embedder_2.linear_1": "byt5_in.fc1",
    "context_embedder_2.linear_2": "byt5_in.fc2",
    "context_embedder_2.linear_3": "byt5_in.fc3",
    "image_embedder.norm_in": "vision_in.proj.0",
    "image_embedder.linear_1": "vision_in.proj.1",
    "image_embedder.linear_2": "vision_in.proj.3",
    "image_embedder.norm_out": "vision_in.proj.4",
    "cond_type_embed": "cond_type_embedding",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}
# transformer_blocks.N.<diffusers> -> double_blocks.N.<official> (MMDoubleStreamBlock).
DOUBLE = {
    "norm1.linear": "img_mod.linear",
    "norm1_context.linear": "txt_mod.linear",
    "attn.to_q": "img_attn_q",
    "attn.to_k": "img_attn_k",
    "attn.to_v": "img_attn_v",
    "attn.norm_q": "img_attn_q_norm",
    "attn.norm_k": "img_attn_k_norm",
    "attn.to_out.0": "img_attn_proj",
    "attn.add_q_proj": "txt_attn_q",
    "attn.add_k_proj": "txt_attn_k",
    "attn.add_v_proj": "txt_attn_v",
    "attn.norm_added_q": "txt_attn_q_norm",
    "attn.norm_added_k": "txt_attn_k_norm",
    "attn.to_add_out": "txt_attn_proj",
    "ff.net.0.proj": "img_mlp.fc1",
    "ff.net.2": "img_mlp.fc2",
    "ff_context.net.0.proj": "txt_mlp.fc1",
    "ff_context.net.2": "txt_mlp.fc2",
}
# context_embedder.token_refiner.refiner_blocks.N.<diffusers> ->
# txt_in.individual_token_refiner.blocks.N.<official> (IndividualTokenRefinerBlock); q, k and v
# are one official layer, self_attn_qkv.
REFINER = {
    "norm1": "norm1",
    "attn.to_out.0": "self_attn_proj",
    "norm2": "norm2",
    "ff.net.0.proj": "mlp.fc1",
    "ff.net.2": "mlp.fc2",
    "norm_out.linear": "adaLN_modulation.1",
}


def official_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' weights as the official checkpoint holds them."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        module, _, parameter = key.rpartition(".")
        if block := re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", module):
            name = f"double_blocks.{block[1]}.{DOUBLE[block[2]]}"
        elif block := re.fullmatch(r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.(.+)", module):  # fmt: skip
            official = f"txt_in.individual_token_refiner.blocks.{block[1]}"
            if part := re.fullmatch(r"attn\.to_([qkv])", block[2]):
                fused.setdefault(f"{official}.self_attn_qkv.{parameter}", {})[part[1]] = value
                continue
            name = f"{official}.{REFINER[block[2]]}"
        else:
            name = TOP[module]
        if name == "final_layer.adaLN_modulation.1":
            # The official layer puts out (shift, scale); diffusers' (scale, shift).
            scale, shift = value.chunk(2)
            value = torch.cat([shift, scale])
        out[f"{name}.{parameter}"] = value
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def official_config(model: Any, concat_condition: bool, resolution: str) -> dict[str, Any]:
    """The model's config.json as Tencent publishes one (``HunyuanVideo_1_5_DiffusionTransformer``
    's arguments, as the published ones list them)."""
    c = model.config
    latent = c.out_channels
    # The official patch embedding adds the image condition and its mask itself (2c + 1 inputs
    # for c latent channels) where concat_condition is set; without it, in_channels is its input.
    assert not concat_condition or c.in_channels == 2 * latent + 1
    return {
        "_class_name": "HunyuanVideo_1_5_DiffusionTransformer",
        "attn_mode": "flash",
        "attn_param": None,
        "concat_condition": concat_condition,
        "glyph_byT5_v2": True,
        "guidance_embed": False,
        "heads_num": c.num_attention_heads,
        "hidden_size": c.num_attention_heads * c.attention_head_dim,
        "ideal_resolution": resolution,
        "ideal_task": c.task_type,
        "in_channels": latent if concat_condition else c.in_channels,
        "is_reshape_temporal_channels": False,
        "mlp_act_type": "gelu_tanh",
        "mlp_width_ratio": c.mlp_ratio,
        "mm_double_blocks_depth": c.num_layers,
        "mm_single_blocks_depth": 0,
        "out_channels": latent,
        "patch_size": [c.patch_size_t, c.patch_size, c.patch_size],
        "qk_norm": True,
        "qk_norm_type": "rms",
        "qkv_bias": True,
        "rope_dim_list": list(c.rope_axes_dim),
        "rope_theta": int(c.rope_theta),
        "text_pool_type": None,
        "text_projection": "single_refiner",
        "text_states_dim": c.text_embed_dim,
        "text_states_dim_2": None,
        "use_attention_mask": True,
        "use_cond_type_embedding": True,
        "use_meanflow": c.use_meanflow,
        "vision_projection": "linear",
        "vision_states_dim": c.image_embed_dim,
    }


@pytest.mark.parametrize(
    "kind",
    [
        # The SR transformer's shape (noise, image condition, low-resolution latent, masks).
        "sr",
        # A step-distilled (MeanFlow: time_r_in) image-to-video one, condition concatenated.
        "step_distilled",
    ],
)
def test_an_official_layout_transformer_loads_as_the_same_model(tmp_path: Path, kind: str) -> None:
    if kind == "sr":
        original = build_tiny_sr(SR_CHECKPOINTS[0]).transformer
        config = official_config(original, concat_condition=False, resolution="720p")
    else:
        original = build_tiny_pipeline(step_distilled=True).transformer
        config = official_config(original, concat_condition=True, resolution="480p")
    state = original.state_dict()
    official = official_state(state)
    # Half the weights in one file, half in another, as the sharded checkpoints are.
    keys = sorted(official)
    for i, shard in enumerate((keys[::2], keys[1::2])):
        save_file({k: official[k].contiguous() for k in shard}, tmp_path / f"model-{i}.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(config))

    loaded = load_official_transformer(tmp_path, torch.float32)

    assert not loaded.training
    # The config's target_size is the checkpoint's resolution's bucket base, not the tiny one's.
    differs = {"target_size", "_name_or_path", "_use_default_values"}
    assert {k: v for k, v in loaded.config.items() if k not in differs} == {
        k: v for k, v in original.config.items() if k not in differs
    }
    loaded_state = loaded.state_dict()
    assert loaded_state.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded_state[key], value), key
    inputs = transformer15_inputs(original)
    if kind == "step_distilled":
        inputs["timestep_r"] = torch.tensor([300.0])  # time_r_in's path, a MeanFlow model's
    with torch.inference_mode():
        # The weights are equal to the bit (above); the output only to float32's rounding, as
        # safetensors' tensors sit at addresses the CPU's matmul kernels round differently at
        # (cloned into fresh storage, the loaded model's output is the original's to the bit).
        # A wrong name, fuse or swap moves it by far more than that.
        torch.testing.assert_close(loaded(**inputs)[0], original(**inputs)[0])
