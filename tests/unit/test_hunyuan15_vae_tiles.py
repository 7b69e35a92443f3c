"""HunyuanVideo 1.5's VAE tiles: framecast decodes in the official tiles and encodes the
conditioning image whole, as ``Tencent-Hunyuan/HunyuanVideo-1.5`` does.

The official values (``hyvideo/pipelines/hunyuan_video_pipeline.py`` ``get_vae_inference_config``
on a GPU of more than 21 GiB): 256-pixel tiles, overlap 0.125; the official tiling and blend
(``hyvideo/models/autoencoders/hunyuanvideo_15_vae.py`` ``spatial_tiled_decode``, ``blend_v``,
``blend_h``) are written out below from those numbers, not taken from diffusers or framecast.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("diffusers")

import PIL.Image
import torch

# Imported from its module: the top-level name is a placeholder to a type checker.
from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import (
    AutoencoderKLHunyuanVideo15,
)

from framecast.engines.hunyuan15.pipeline import (
    OFFICIAL_VAE_TILING,
    FramecastHunyuan15Pipeline,
    enable_official_vae_tiling,
)

SAMPLE_TILE = 256
"""Official ``sample_size``: a tile's side in pixels."""
OVERLAP = 0.125
"""Official ``tile_overlap_factor``."""
SPATIAL = 16
"""The VAE's spatial compression (official ``ffactor_spatial``)."""


@pytest.fixture
def vae() -> AutoencoderKLHunyuanVideo15:
    """A tiny random 1.5 VAE, with the real one's 16x/4x compression (as ``tiny.py``'s)."""
    torch.manual_seed(0)
    model: AutoencoderKLHunyuanVideo15 = AutoencoderKLHunyuanVideo15(
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8, 8),
        layers_per_block=1,
        spatial_compression_ratio=SPATIAL,
        temporal_compression_ratio=4,
    )
    model.eval()
    return model


def official_tiled_decode(vae: AutoencoderKLHunyuanVideo15, z: torch.Tensor) -> torch.Tensor:
    """The official ``spatial_tiled_decode`` from its numbers: latent tiles of 256 // 16
    latents every 14, each decoded whole; each blended linearly into the tile above it and
    the tile left of it (as those stand after their own blending) over 32 pixels; 224 pixels
    of each kept."""
    tile = SAMPLE_TILE // SPATIAL  # 16 latents
    stride = int(tile * (1 - OVERLAP))  # 14 latents
    blend = int(SAMPLE_TILE * OVERLAP)  # 32 pixels
    keep = SAMPLE_TILE - blend  # 224 pixels
    height, width = z.shape[-2:]
    grid = [
        [vae.decoder(z[..., i : i + tile, j : j + tile]) for j in range(0, width, stride)]
        for i in range(0, height, stride)
    ]
    rows = []
    for r, row in enumerate(grid):
        kept = []
        for c, this in enumerate(row):
            if r > 0:  # from the tile above: weight y/n on this one's row y
                above = grid[r - 1][c]
                n = min(blend, above.shape[-2], this.shape[-2])
                for y in range(n):
                    this[..., y, :] = above[..., y - n, :] * (1 - y / n) + this[..., y, :] * (y / n)
            if c > 0:  # then from the tile to its left, column by column
                left = row[c - 1]
                n = min(blend, left.shape[-1], this.shape[-1])
                for x in range(n):
                    this[..., x] = left[..., x - n] * (1 - x / n) + this[..., x] * (x / n)
            kept.append(this[..., :keep, :keep])
        rows.append(torch.cat(kept, dim=-1))
    return torch.cat(rows, dim=-2)


def test_the_official_values() -> None:
    assert OFFICIAL_VAE_TILING == {
        "tile_sample_min_height": SAMPLE_TILE,
        "tile_sample_min_width": SAMPLE_TILE,
        "tile_latent_min_height": SAMPLE_TILE // SPATIAL,
        "tile_latent_min_width": SAMPLE_TILE // SPATIAL,
        "tile_overlap_factor": OVERLAP,
    }


def test_the_decode_blends_the_official_tiles_to_the_bit(
    vae: AutoencoderKLHunyuanVideo15,
) -> None:
    # 20x20 latents (320x320 pixels), one latent frame: tiles at latents 0 and 14 each way,
    # 2x2 tiles of 256 and 96 pixels, each seam blended.
    z = torch.randn(1, 4, 1, 20, 20, generator=torch.Generator().manual_seed(1))
    enable_official_vae_tiling(vae)
    with torch.inference_mode():
        ours = vae.decode(z).sample
        expected = official_tiled_decode(vae, z)
        # diffusers' default overlap (0.25): tiles every 12 latents, blended over 64 pixels.
        vae.enable_tiling(tile_overlap_factor=0.25)
        diffusers_default = vae.decode(z).sample
    assert ours.shape == expected.shape == (1, 3, 1, 320, 320)
    assert torch.equal(ours, expected)
    assert not torch.equal(diffusers_default, expected)


def vae_only_pipeline(vae: AutoencoderKLHunyuanVideo15) -> FramecastHunyuan15Pipeline:
    others: dict[str, Any] = dict.fromkeys(
        (
            "text_encoder",
            "tokenizer",
            "transformer",
            "scheduler",
            "text_encoder_2",
            "tokenizer_2",
            "guider",
            "image_encoder",
            "feature_extractor",
        )
    )
    return FramecastHunyuan15Pipeline(vae=vae, **others)


def test_the_conditioning_image_is_encoded_whole_though_decoding_is_tiled(
    vae: AutoencoderKLHunyuanVideo15,
) -> None:
    pipe = vae_only_pipeline(vae)
    enable_official_vae_tiling(vae)
    # Wider than a 256-pixel tile, so a tiled encode would blend its latent at the seam.
    height, width = 256, 320
    picture = PIL.Image.fromarray(
        torch.randint(0, 256, (height, width, 3), generator=torch.Generator().manual_seed(2))
        .to(torch.uint8)
        .numpy()
    )
    latents = torch.zeros(1, 4, 2, height // SPATIAL, width // SPATIAL)
    cpu = torch.device("cpu")

    def image_latents() -> torch.Tensor:
        latent: torch.Tensor = pipe._get_image_latents(
            vae, pipe.video_processor, picture, height, width, cpu
        )
        return latent

    with torch.inference_mode():
        condition, mask = pipe.prepare_cond_latents_and_mask(
            latents, picture, 1, height, width, torch.float32, cpu
        )
        assert vae.use_tiling  # switched back on for the decode
        tiled = image_latents()
        vae.use_tiling = False
        whole = image_latents()
    assert condition.shape == (1, 4, 2, height // SPATIAL, width // SPATIAL)
    assert torch.equal(condition[:, :, :1], whole)
    assert not condition[:, :, 1:].any()
    assert mask[:, :, 0].all() and not mask[:, :, 1:].any()
    assert not torch.equal(tiled, whole)
