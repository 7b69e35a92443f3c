"""Inputs for the tiny HunyuanVideo models, shared by the unit tests that call them."""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
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


def transformer15_inputs(transformer: Any, seed: int = 3) -> dict[str, Any]:
    """One denoising call's inputs for the tiny 1.5 transformer, padding-free."""
    g = torch.Generator().manual_seed(seed)
    config = transformer.config
    return dict(
        hidden_states=torch.randn(1, config.in_channels, 2, 3, 5, generator=g),
        timestep=torch.tensor([700.0]),
        encoder_hidden_states=torch.randn(1, 7, config.text_embed_dim, generator=g),
        encoder_attention_mask=torch.ones(1, 7),
        encoder_hidden_states_2=torch.randn(1, 3, config.text_embed_2_dim, generator=g),
        encoder_attention_mask_2=torch.ones(1, 3),
        image_embeds=torch.randn(1, 729, config.image_embed_dim, generator=g),
        return_dict=False,
    )


def gradient_image() -> PIL.Image.Image:
    """100x60 (5:3, an aspect no output size has, so the cover crop resizes), opposite red and
    green gradients, so that different crops give different pixels."""
    x = np.linspace(0, 255, 100, dtype=np.uint8)
    rgb = np.stack(
        [np.tile(x, (60, 1)), np.tile(x[::-1], (60, 1)), np.full((60, 100), 90, np.uint8)], -1
    )
    return PIL.Image.fromarray(rgb)
