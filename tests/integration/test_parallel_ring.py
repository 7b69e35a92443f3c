"""Ring attention on a group of 2 gloo processes against one process, whole engine (tiny model).

Its own module: this test process becomes rank 0 of the group, and a process holds one
default process group at a time (test_parallel_engine.py keeps one for its whole module).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

from framecast.engines.base import NullHooks
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.weights import resolve_model
from framecast.settings import Settings
from framecast.worker.group import group_engine

from .tiny_jobs import engine_request


def test_ring_attention_on_two_processes_makes_the_frames_of_one(tmp_path: Path) -> None:
    # Ring instead of Ulysses, on the size whose 351 image tokens do not split evenly, with true
    # CFG (a second pass, with the negative prompt's own text length).
    settings = Settings(
        data_dir=tmp_path,
        device="cpu",
        engine="hunyuan",
        hunyuan_model="tiny-random",
        parallel=2,
        ulysses_degree=1,
        ring_degree=2,
        parallel_timeout_seconds=60,
    )
    request = engine_request("a red square drifts slowly to the left.", 208, 144, 9, cfg_scale=2.0)
    expected = np.stack(
        list(HunyuanEngine.load(resolve_model("tiny-random")).generate(request, NullHooks()))
    )
    with group_engine(settings) as ring:
        assert ring.metadata()["parallel"] == {
            "processes": 2,
            "ulysses_degree": 1,
            "ring_degree": 2,
        }
        got = np.stack(list(ring.generate(request, NullHooks())))
    diff = int(np.abs(got.astype(int) - expected.astype(int)).max())
    print(f"ring, true CFG: {diff} 8-bit level(s) from one process")
    assert diff <= 1, f"ring: {diff} 8-bit levels apart"
