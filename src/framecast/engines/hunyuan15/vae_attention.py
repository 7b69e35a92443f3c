"""The 1.5 VAE's attention without its sequence-squared mask.

The VAE's mid-block attention (diffusers' ``HunyuanVideo15AttnBlock``, as the official VAE) is
causal by frame: a latent token attends to every token of its own frame and of the frames
before it. diffusers builds that as a float [S, S] mask of ``-inf`` and zeros, S being every
latent token of the video (or of the tile), filled by a Python loop over all S rows. At 480p
with 121 frames, decoded whole, that is 49,290 rows and a 4.5 GiB fp16 mask; on the tiny test
model's 848x480 61-frame decode on a CPU it is most of an 8.5 GB peak and a minute of the loop.

:func:`frame_causal_attention` computes the same attention one query frame at a time, each
against the frames up to it, with no mask: the masked entries contribute exactly zero to the
stock softmax, so only float rounding differs. Memory is a frame's tokens times S, and the
attention kernel skips the half of the products the mask would discard.

It replaces the blocks' ``forward`` on the instances the engine loads (diffusers' attention
here is a plain module method with no processor to swap), leaving the class alone.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import (
    AutoencoderKLHunyuanVideo15,
    HunyuanVideo15AttnBlock,
)


def frame_causal_attention(block: HunyuanVideo15AttnBlock, x: torch.Tensor) -> torch.Tensor:
    """``block``'s forward on ``x`` [B, C, F, H, W], without building its [S, S] mask."""
    identity = x
    x = block.norm(x)
    query, key, value = block.to_q(x), block.to_k(x), block.to_v(x)
    batch, channels, frames, height, width = query.shape
    per_frame = height * width

    def tokens(t: torch.Tensor) -> torch.Tensor:
        # [B, 1 head, S, C], frame-major: the layout the stock block attends in.
        return t.reshape(batch, channels, frames * per_frame).transpose(1, 2).unsqueeze(1)

    query, key, value = tokens(query), tokens(key), tokens(value)
    out = torch.empty_like(query)
    for frame in range(frames):
        rows = slice(frame * per_frame, (frame + 1) * per_frame)
        seen = (frame + 1) * per_frame
        out[:, :, rows] = F.scaled_dot_product_attention(
            query[:, :, rows], key[:, :, :seen], value[:, :, :seen]
        )
    x = out.squeeze(1).reshape(batch, frames, height, width, channels).permute(0, 4, 1, 2, 3)
    return block.proj_out(x) + identity  # type: ignore[no-any-return]


def install_frame_causal_attention(vae: AutoencoderKLHunyuanVideo15) -> int:
    """Give every attention block of ``vae`` :func:`frame_causal_attention` as its forward;
    returns how many it has."""
    blocks = [m for m in vae.modules() if isinstance(m, HunyuanVideo15AttnBlock)]
    for block in blocks:
        block.forward = functools.partial(frame_causal_attention, block)  # type: ignore[method-assign]
    return len(blocks)
