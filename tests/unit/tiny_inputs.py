"""Inputs for the tiny HunyuanVideo-I2V transformer, shared by the unit tests that call it."""

from __future__ import annotations

from typing import Any

import torch


def transformer_inputs(seed: int = 3) -> dict[str, Any]:
    """One denoising call's inputs for the tiny transformer, drawn afresh from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(1, 4, 2, 6, 8, generator=g),
        timestep=torch.tensor([700.0]),
        guidance=torch.tensor([6000.0]),
        encoder_hidden_states=torch.randn(1, 9, 16, generator=g),
        encoder_attention_mask=torch.ones(1, 9, dtype=torch.bool),
        pooled_projections=torch.randn(1, 8, generator=g),
        return_dict=False,
    )
