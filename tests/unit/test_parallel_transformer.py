"""The tiny transformers of both models split across 2 gloo processes against one process.

This test process is rank 0 and rank 1 is spawned; each runs every case of each model with
Ulysses 2 and with Ring 2. Cases: sequences that divide by 2, an odd text length, and an
image-token count that does not divide by 2; for HunyuanVideo 1.5 also text padding, cut by its
exact path before the split.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
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
from framecast.engines.hunyuan15.exact import ExactAttention
from framecast.engines.hunyuan15.tiny import build_tiny_pipeline as build_tiny_15
from framecast.parallel.group import GroupPlan, free_port, join, leave

Case = tuple[tuple[int, ...], int]

CASES: dict[str, Case] = {
    # latent shape [B, C, F, H, W] -> image tokens F*(H/2)*(W/2); text tokens
    "even": ((1, 4, 2, 6, 8), 10),  # 24 image tokens, 10 text
    "odd text": ((1, 4, 2, 6, 8), 9),
    "odd image": ((1, 4, 3, 6, 10), 10),  # 45 image tokens
}

CASES_15: dict[str, Case] = {
    # latent shape [B, 2C+1, F, H, W] -> image tokens F*H*W (patch 1); Qwen tokens, of which the
    # last 3 are padding where the name says so. Text: 3 SigLIP + 2 ByT5 + the valid Qwen tokens.
    "even": ((1, 9, 2, 3, 4), 9),  # 24 image tokens, 14 text
    "odd text": ((1, 9, 2, 3, 4), 8),
    "odd image, padded": ((1, 9, 3, 3, 5), 12),  # 45 image tokens, 14 text
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


def _inputs_15(name: str, shape: tuple[int, ...], text: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(sum(shape) + text)
    config = _TINY_15_CONFIG
    mask = torch.ones(1, text, dtype=torch.bool)
    if "padded" in name:
        mask[:, -3:] = False
    return dict(
        hidden_states=torch.randn(*shape, generator=g),
        timestep=torch.tensor([700.0]),
        encoder_hidden_states=torch.randn(1, text, config["text_embed_dim"], generator=g),
        encoder_attention_mask=mask,
        encoder_hidden_states_2=torch.randn(1, 2, config["text_embed_2_dim"], generator=g),
        encoder_attention_mask_2=torch.ones(1, 2, dtype=torch.bool),
        image_embeds=torch.randn(1, 3, config["image_embed_dim"], generator=g),
        return_dict=False,
    )


_TINY_15_CONFIG: dict[str, Any] = {}


def _transformer() -> Any:
    transformer = build_tiny_pipeline().transformer
    install_unmasked_attention(transformer).unpadded = True
    return transformer


def _transformer_15() -> Any:
    transformer = build_tiny_15().transformer
    ExactAttention(transformer)
    return transformer


def _all_inputs() -> dict[tuple[str, str], tuple[Callable[[], Any], dict[str, Any]]]:
    """(model, case) -> (the transformer it runs on, its inputs)."""
    _TINY_15_CONFIG.update(build_tiny_15().transformer.config)
    cases: dict[tuple[str, str], tuple[Callable[[], Any], dict[str, Any]]] = {}
    for name, (shape, text) in CASES.items():
        cases[("I2V", name)] = (_transformer, _inputs(shape, text))
    for name, (shape, text) in CASES_15.items():
        cases[("1.5", name)] = (_transformer_15, _inputs_15(name, shape, text))
    return cases


def _rank(plan: GroupPlan, rank: int) -> dict[tuple[str, str, str], torch.Tensor]:
    member = join(plan, rank)
    results: dict[tuple[str, str, str], torch.Tensor] = {}
    try:
        cases = _all_inputs()
        for model, build in {"I2V": _transformer, "1.5": _transformer_15}.items():
            base = build()
            for mode, degrees in {"ulysses": (2, 1), "ring": (1, 2)}.items():
                transformer = copy.deepcopy(base)
                enable_sequence_parallel(transformer, choose_degrees(2, 2, *degrees), member.device)
                for (of, name), (_, inputs) in cases.items():
                    if of == model:
                        with torch.inference_mode():
                            results[(model, mode, name)] = transformer(**inputs)[0]
    finally:
        leave()
    return results


def test_two_processes_match_one_with_ulysses_and_ring() -> None:
    # Stock attention, with its masks (1.5's sequence-squared one included).
    references = {"I2V": build_tiny_pipeline().transformer, "1.5": build_tiny_15().transformer}
    expected = {}
    with torch.inference_mode():
        for (model, name), (_, inputs) in _all_inputs().items():
            expected[(model, name)] = references[model](**inputs)[0]
    plan = GroupPlan(("cpu", "cpu"), free_port(), 60.0)
    # Rank 1 is spawned; this process is rank 0.
    other = mp.get_context("spawn").Process(target=_rank, args=(plan, 1))
    other.start()
    try:
        results = _rank(plan, 0)
    finally:
        other.join(30)
    assert other.exitcode == 0
    assert len(results) == 2 * len(expected)
    worst = 0.0
    for (model, mode, name), got in results.items():
        want = expected[(model, name)]
        assert got.shape == want.shape, (model, mode, name)
        diff = (got - want).abs().max().item()
        worst = max(worst, diff)
        assert diff < 1e-5, f"{model} {mode} {name}: max difference {diff:.2e}"
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
