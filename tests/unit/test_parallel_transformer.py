"""The tiny HunyuanVideo transformer split across 2 gloo processes against one process.

This test process is rank 0 and rank 1 is spawned; each runs every case with Ulysses 2 and
with Ring 2. Cases: sequences that divide by 2, an odd
text length, and an image-token count that does not divide by 2.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

pytest.importorskip("diffusers")

from framecast.engines.hunyuan.parallel import (
    ParallelUnsupported,
    choose_degrees,
    enable_sequence_parallel,
    shard_sizes,
)
from framecast.engines.hunyuan.speedups import install_unmasked_attention
from framecast.engines.hunyuan.tiny import build_tiny_pipeline
from framecast.parallel.group import GroupPlan, free_port, join, leave

CASES: dict[str, tuple[tuple[int, ...], int]] = {
    # latent shape [B, C, F, H, W] -> image tokens F*(H/2)*(W/2); text tokens
    "even": ((1, 4, 2, 6, 8), 10),  # 24 image tokens, 10 text
    "odd text": ((1, 4, 2, 6, 8), 9),
    "odd image": ((1, 4, 3, 6, 10), 10),  # 45 image tokens
}


def _inputs(shape: tuple[int, ...], text: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(sum(shape) + text)
    return dict(
        hidden_states=torch.randn(*shape, generator=g),
        timestep=torch.tensor([700.0]),
        guidance=torch.tensor([6000.0]),
        encoder_hidden_states=torch.randn(1, text, 16, generator=g),
        encoder_attention_mask=torch.ones(1, text, dtype=torch.bool),
        pooled_projections=torch.randn(1, 8, generator=g),
        return_dict=False,
    )


def _transformer() -> Any:
    transformer = build_tiny_pipeline().transformer
    install_unmasked_attention(transformer).unpadded = True
    return transformer


def _rank(plan: GroupPlan, rank: int) -> dict[tuple[str, str], torch.Tensor]:
    member = join(plan, rank)
    results: dict[tuple[str, str], torch.Tensor] = {}
    try:
        base = _transformer()
        for mode, degrees in {"ulysses": (2, 1), "ring": (1, 2)}.items():
            transformer = copy.deepcopy(base)
            enable_sequence_parallel(transformer, choose_degrees(2, 2, *degrees), member.device)
            for name, (shape, text) in CASES.items():
                with torch.inference_mode():
                    results[(mode, name)] = transformer(**_inputs(shape, text))[0]
    finally:
        leave()
    return results


def test_two_processes_match_one_with_ulysses_and_ring() -> None:
    reference = build_tiny_pipeline().transformer  # stock attention, with its mask
    expected = {}
    with torch.inference_mode():
        for name, (shape, text) in CASES.items():
            expected[name] = reference(**_inputs(shape, text))[0]
    plan = GroupPlan(("cpu", "cpu"), free_port(), 60.0)
    # Rank 1 is spawned; this process is rank 0.
    other = mp.get_context("spawn").Process(target=_rank, args=(plan, 1))
    other.start()
    try:
        results = _rank(plan, 0)
    finally:
        other.join(30)
    assert other.exitcode == 0
    worst = 0.0
    for (mode, name), got in results.items():
        assert got.shape == expected[name].shape, (mode, name)
        diff = (got - expected[name]).abs().max().item()
        worst = max(worst, diff)
        assert diff < 1e-5, f"{mode} {name}: max difference {diff:.2e}"
    print(f"max difference from one process: {worst:.2e}")  # measured: 3.0e-7 (fp32)


def test_each_rank_counts_its_own_first_frame_tokens() -> None:
    # 45 image tokens on 2 ranks: 23 + 22; a 15-token first frame lies wholly on rank 0.
    assert shard_sizes(45, 2) == [23, 22]
    assert shard_sizes(24, 4) == [6, 6, 6, 6]
    assert shard_sizes(10, 4) == [3, 3, 2, 2]


def test_degrees_follow_the_heads_and_refuse_what_cannot_run() -> None:
    assert choose_degrees(8, 24) == choose_degrees(8, 24, ulysses=8)
    assert (choose_degrees(8, 24).ulysses, choose_degrees(8, 24).ring) == (8, 1)
    # 24 heads do not divide among 5 or 16 processes: Ring, which takes any head count.
    assert (choose_degrees(5, 24).ulysses, choose_degrees(5, 24).ring) == (1, 5)
    assert (choose_degrees(16, 24).ulysses, choose_degrees(16, 24).ring) == (1, 16)
    assert choose_degrees(4, 2, ring=4).ring == 4
    with pytest.raises(ParallelUnsupported, match="Ulysses 2 x Ring 2"):
        choose_degrees(4, 24, ulysses=2, ring=2)
    with pytest.raises(ParallelUnsupported, match="does not divide the model's 24"):
        choose_degrees(5, 24, ulysses=5)
    with pytest.raises(ParallelUnsupported, match="product is 4"):
        choose_degrees(4, 24, ulysses=2, ring=1)
