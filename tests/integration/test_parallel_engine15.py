"""The whole HunyuanVideo 1.5 engine (tiny model) on a group of 2 gloo processes against one
process: the frames, and a cancel that stops both ranks at the same step.

This test process is rank 0 (``group_engine``, as ``framecast generate --parallel 2`` runs it);
rank 1 is spawned. Sizes are tiny: what splits is the transformer's sequence, and the tiny
model's VAE takes seconds per frame at the API's sizes (the CLI's own test runs one of those).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("diffusers")

from framecast.engines.base import Cancelled, NullHooks
from framecast.engines.hunyuan.group import GroupEngine
from framecast.engines.hunyuan15.engine import Hunyuan15Engine
from framecast.engines.hunyuan15.weights import resolve_model
from framecast.models.hunyuan15_i2v import MODEL_ID
from framecast.settings import Settings
from framecast.worker.group import group_engine

from .tiny_jobs import CancelAfterFirstStep, engine_request

# True CFG: two passes per step, the negative prompt with its own text length.
REQUESTS = [
    # 2 latent frames of 5 x 3: 30 image tokens, even.
    engine_request("a blue sky over the sea", 80, 48, 5, guidance_scale=3.0),
    # 3 latent frames of 5 x 3: 45 image tokens, no even split among 2; quoted text (ByT5).
    engine_request(
        'a red square drifts left past a sign that says "open"', 80, 48, 9, guidance_scale=3.0
    ),
]


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GroupEngine]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("group15"),
        device="cpu",
        engine="hunyuan",
        hunyuan_model="tiny-random",
        models=[MODEL_ID],
        parallel=2,
        parallel_timeout_seconds=60,
    )
    with group_engine(settings) as engine:
        yield engine


def test_two_processes_make_the_frames_of_one(group: GroupEngine) -> None:
    single = Hunyuan15Engine.load(resolve_model("tiny-random"))
    worst = 0
    for request in REQUESTS:
        expected = np.stack(list(single.generate(request, NullHooks())))
        got = np.stack(list(group.generate(request, NullHooks())))
        assert got.shape == expected.shape == (request.num_frames, request.height, request.width, 3)
        diff = int(np.abs(got.astype(int) - expected.astype(int)).max())
        worst = max(worst, diff)
        assert diff <= 1, f"{request.num_frames} frames: {diff} 8-bit levels apart"
    print(f"1.5, max difference from one process: {worst} 8-bit level(s)")
    meta = group.metadata()
    assert meta["pipeline"] == "HunyuanVideo 1.5 image-to-video"
    # The tiny model's 2 heads divide among 2 processes: Ulysses.
    assert meta["parallel"] == {"processes": 2, "ulysses_degree": 2, "ring_degree": 1}


def test_a_cancel_stops_every_rank_at_the_same_step_and_the_group_runs_on(
    group: GroupEngine,
) -> None:
    hooks = CancelAfterFirstStep()
    with pytest.raises(Cancelled, match="cancelled by the client"):
        list(group.generate(REQUESTS[0], hooks))
    assert hooks.steps == 1
    # Rank 1 stopped at the same step: the next request runs on the whole group.
    assert len(list(group.generate(REQUESTS[1], NullHooks()))) == 9
