"""A LoRA file for the tiny HunyuanVideo transformer, as a user would drop into FRAMECAST_LORA_DIR."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from framecast.engines.hunyuan.pipeline import FramecastHunyuanPipeline
from framecast.engines.hunyuan.tiny import build_tiny_pipeline


def save_tiny_lora(folder: Path, name: str = "watercolor") -> None:
    """``folder/<name>.safetensors``: rank 4 on to_q and to_v, non-zero (it changes the video),
    the same weights every time."""
    transformer = build_tiny_pipeline().transformer
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        transformer.add_adapter(config, adapter_name="new")
    FramecastHunyuanPipeline.save_lora_weights(
        folder,
        transformer_lora_layers=get_peft_model_state_dict(transformer, adapter_name="new"),
        weight_name=f"{name}.safetensors",
    )
