"""How much arithmetic one denoising step of the HunyuanVideo transformer is, from its shapes.

No torch: the benchmark divides these counts by measured step times to say how close a path
is to the hardware. Counted are the matrix products that dominate (a multiply-add is 2 FLOP);
norms, RoPE, modulation and activations are a fraction of a percent and left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FULL_SIZE: dict[str, Any] = {
    "num_layers": 20,
    "num_single_layers": 40,
    "num_attention_heads": 24,
    "attention_head_dim": 128,
    "mlp_ratio": 4.0,
    "patch_size": 2,
    "patch_size_t": 1,
}
"""The published HunyuanVideo-I2V transformer ("HYVideo-T/2"), as far as FLOPs care."""


@dataclass(frozen=True)
class StepFlops:
    video_tokens: int
    text_tokens: int
    linear: float
    """The blocks' projections and MLPs."""
    attention: float
    """QK^T and PV over the joint video+text sequence."""

    @property
    def total(self) -> float:
        return self.linear + self.attention

    def as_dict(self) -> dict[str, float | int]:
        return {
            "video_tokens": self.video_tokens,
            "text_tokens": self.text_tokens,
            "linear_flop": self.linear,
            "attention_flop": self.attention,
            "total_flop": self.total,
        }


def video_tokens(
    config: Mapping[str, Any],
    num_frames: int,
    height: int,
    width: int,
    vae_t: int = 4,
    vae_s: int = 8,
) -> int:
    """Tokens the transformer sees for a video: latent frames x patches per frame."""
    frames = (num_frames - 1) // vae_t + 1
    p, pt = int(config["patch_size"]), int(config["patch_size_t"])
    return (frames // pt) * (height // vae_s // p) * (width // vae_s // p)


def step_flops(
    config: Mapping[str, Any],
    num_frames: int,
    height: int,
    width: int,
    text_tokens: int,
    passes: int = 1,
) -> StepFlops:
    """FLOP of one denoising step (``passes`` = 2 with true CFG: two transformer calls).

    Per token, a double-stream block projects q, k, v and out (4 d^2) and runs a 4x MLP
    (8 d^2), with separate weights for video and text tokens; a single-stream block does the
    same 12 d^2 through its fused linear1 (d -> 3d + 4d) and linear2 (5d -> d). Attention costs
    4 N^2 d for QK^T and PV over all N tokens.
    """
    d = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    mlp = float(config.get("mlp_ratio", 4.0))
    per_token = 2 * (4 + 2 * mlp) * d * d  # 2 FLOP per multiply-add
    blocks = int(config["num_layers"]) + int(config["num_single_layers"])
    nv = video_tokens(config, num_frames, height, width)
    n = nv + text_tokens
    linear = per_token * n * blocks
    attention = 4.0 * n * n * d * blocks
    return StepFlops(nv, text_tokens, passes * linear, passes * attention)
