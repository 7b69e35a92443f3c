"""The HunyuanVideo 1.5 super-resolution stage's latent upsamplers, which diffusers does not have.

Written from the description of the official modules (Tencent-Hunyuan/HunyuanVideo-1.5,
``hyvideo/models/transformers/modules/upsample.py``): both refine a latent that has already been
resized to the high-resolution grid (bilinearly, by the SR stage: :mod:`.sr`), on the VAE's
building blocks, which diffusers has (``HunyuanVideo15CausalConv3d``: a Conv3d behind a
replicate pad that is causal in time; ``HunyuanVideo15ResnetBlock``, ``HunyuanVideo15RMS_norm``).

- 720p (``SRTo720pUpsampler``): a causal 3x3x3 conv in, ``num_blocks`` residual blocks of three
  causal convs with SiLU between them, a causal conv out, plus the input where
  ``global_residual`` and the shapes agree.
- 1080p (``SRTo1080pUpsampler``): a causal conv in plus the input repeated along channels, the
  VAE's decoder-style levels of ``num_res_blocks + 1`` ResNet blocks (no resampling: the
  resize happened before), an RMS norm, swish, a causal conv out.

The module and parameter names are the official ones, so the official safetensors load as they
are; the one official name diffusers' ResNet block spells otherwise (``nin_shortcut``, its
``conv_shortcut``) is renamed on load. Each checkpoint folder's ``config.json`` names its class
(``_class_name``) and its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast

import torch
from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import (
    HunyuanVideo15CausalConv3d,
    HunyuanVideo15ResnetBlock,
    HunyuanVideo15RMS_norm,
)
from torch import nn
from torch.nn import functional as F

from framecast.engines.hunyuan.weights import WeightsError
from framecast.engines.hunyuan15.official import read_folder


class ResidualCausalBlock(nn.Module):
    """Three causal 3x3x3 convs with SiLU between them, added to the input (official
    ``SRResidualCausalBlock3D``; ``block`` is a Sequential so the weights are ``block.0``,
    ``block.2``, ``block.4``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            HunyuanVideo15CausalConv3d(channels, channels, kernel_size=3),
            nn.SiLU(),
            HunyuanVideo15CausalConv3d(channels, channels, kernel_size=3),
            nn.SiLU(),
            HunyuanVideo15CausalConv3d(channels, channels, kernel_size=3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.block(x)
        return out


class Upsampler720p(nn.Module):
    """The official ``SRTo720pUpsampler`` (its defaults: 64 hidden channels, 6 blocks)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int | None = None,
        num_blocks: int = 6,
        global_residual: bool = False,
    ) -> None:
        super().__init__()
        hidden = 64 if hidden_channels is None else hidden_channels
        self.in_conv = HunyuanVideo15CausalConv3d(in_channels, hidden, kernel_size=3)
        self.blocks = nn.ModuleList(ResidualCausalBlock(hidden) for _ in range(num_blocks))
        self.out_conv = HunyuanVideo15CausalConv3d(hidden, out_channels, kernel_size=3)
        self.global_residual = bool(global_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.in_conv(x)
        for block in self.blocks:
            y = block(y)
        y = self.out_conv(y)
        if self.global_residual and y.shape == x.shape:
            y = y + x
        out: torch.Tensor = y
        return out


class _Level(nn.Module):
    """One level of :class:`Upsampler1080p`: its ResNet blocks, as ``up.<i>.block.<j>``."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)


class Upsampler1080p(nn.Module):
    """The official ``SRTo1080pUpsampler`` (no resampling inside: the SR stage resizes first)."""

    def __init__(
        self,
        z_channels: int,
        out_channels: int,
        block_out_channels: tuple[int, ...] | list[int],
        num_res_blocks: int = 2,
        is_residual: bool = False,  # in the official config; its forward never reads it
    ) -> None:
        super().__init__()
        channels = tuple(block_out_channels)
        self.z_channels = z_channels
        self.repeats = channels[0] // z_channels
        self.conv_in = HunyuanVideo15CausalConv3d(z_channels, channels[0], kernel_size=3)
        levels, width = [], channels[0]
        for out in channels:
            blocks: list[nn.Module] = []
            for _ in range(num_res_blocks + 1):
                blocks.append(HunyuanVideo15ResnetBlock(width, out))
                width = out
            levels.append(_Level(blocks))
        self.up = nn.ModuleList(levels)
        self.norm_out = HunyuanVideo15RMS_norm(width, images=False)
        self.conv_out = HunyuanVideo15CausalConv3d(width, out_channels, kernel_size=3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z) + z.repeat_interleave(self.repeats, dim=1)
        for level in self.up:
            for block in cast(_Level, level).block:
                h = block(h)
        out: torch.Tensor = self.conv_out(F.silu(self.norm_out(h)))
        return out


UPSAMPLERS: Final[Mapping[str, type[nn.Module]]] = {
    "SRTo720pUpsampler": Upsampler720p,
    "SRTo1080pUpsampler": Upsampler1080p,
}
"""The official ``_class_name`` of each upsampler folder's config.json -> ours."""


def build_upsampler(config: Mapping[str, Any]) -> nn.Module:
    """The upsampler an official ``config.json`` describes, with fresh weights."""
    name = config.get("_class_name")
    cls = UPSAMPLERS.get(str(name))
    if cls is None:
        raise WeightsError(
            f"unknown HunyuanVideo 1.5 upsampler class {name!r}; expected one of "
            + ", ".join(UPSAMPLERS)
        )
    arguments = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        return cls(**arguments)
    except TypeError as exc:
        raise WeightsError(f"the upsampler config does not fit {name}: {exc}") from exc


def official_to_ours(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official upsampler weights under our names (only ``nin_shortcut`` differs)."""
    return {k.replace(".nin_shortcut.", ".conv_shortcut."): v for k, v in state.items()}


def load_upsampler(folder: Path) -> nn.Module:
    """An official ``upsampler/<version>`` folder (config.json and safetensors) as a float32
    module in eval mode: the official pipeline runs the upsampler in float32."""
    config, state = read_folder(folder, "upsampler")
    model = build_upsampler(config)
    try:
        model.load_state_dict(official_to_ours(state), strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"the upsampler weights in {folder} do not fit its config: {exc}"
        ) from exc
    return model.float().eval()
