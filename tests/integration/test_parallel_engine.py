"""The whole hunyuan engine (tiny model) on a group of 2 gloo processes against one process,
LoRA included.

This test process is rank 0 (``group_engine``, as ``framecast generate --parallel 2`` runs it);
rank 1 is spawned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")


from framecast.engines.base import Cancelled, NullHooks
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.group import GroupEngine
from framecast.engines.hunyuan.loras import LoraSettings
from framecast.engines.hunyuan.weights import resolve_model
from framecast.errors import InputError
from framecast.models.request import LoraChoice
from framecast.settings import Settings
from framecast.worker.group import group_engine

from .tiny_jobs import CancelAfterFirstStep, engine_request
from .tiny_loras import save_tiny_lora

REQUESTS = [
    engine_request("a blue sky over the sea", 256, 160, 5),  # 2 x 10 x 16 image tokens
    # 3 x 9 x 13 = 351 image tokens: no even split among 2.
    engine_request("a red square drifts slowly to the left.", 208, 144, 9),
]


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    save_tiny_lora(folder)
    return folder


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory, lora_dir: Path) -> Iterator[GroupEngine]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("group"),
        device="cpu",
        engine="hunyuan",
        hunyuan_model="tiny-random",
        lora_dir=lora_dir,
        parallel=2,
        parallel_timeout_seconds=60,
    )
    with group_engine(settings) as engine:
        yield engine


def test_two_processes_make_the_frames_of_one(group: GroupEngine, lora_dir: Path) -> None:
    single = HunyuanEngine.load(resolve_model("tiny-random"), loras=LoraSettings(lora_dir))
    with_lora = engine_request(
        "a blue sky over the sea", 256, 160, 5, loras=(LoraChoice("watercolor"),)
    )
    worst = 0
    made = []
    for request in [*REQUESTS, with_lora]:
        expected = np.stack(list(single.generate(request, NullHooks())))
        got = np.stack(list(group.generate(request, NullHooks())))
        made.append(got)
        assert got.shape == expected.shape == (request.num_frames, request.height, request.width, 3)
        diff = int(np.abs(got.astype(int) - expected.astype(int)).max())
        worst = max(worst, diff)
        assert diff <= 1, f"{request.width}x{request.height}: {diff} 8-bit levels apart"
    print(f"max difference from one process: {worst} 8-bit level(s)")
    # The LoRA was applied on the group (the same request without it differs).
    assert int(np.abs(made[2].astype(int) - made[0].astype(int)).max()) > 1
    meta = group.metadata()
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


def test_step_cache_is_refused_before_any_rank_runs(group: GroupEngine) -> None:
    with pytest.raises(InputError, match="step_cache is not available on a multi-GPU worker"):
        list(
            group.generate(engine_request("x", 256, 160, 5, step_cache="first_block"), NullHooks())
        )


def test_settings_the_group_cannot_run_are_refused_at_start(tmp_path: Path) -> None:
    from framecast.worker.group import GroupError

    settings = Settings(data_dir=tmp_path, device="cpu", engine="preview", parallel=2)
    with pytest.raises(GroupError, match="a group needs hunyuan"), group_engine(settings):
        pass
