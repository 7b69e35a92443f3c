"""``framecast generate --model tencent/hunyuan-video-v1.5/image-to-video --parallel 2`` end to
end, in-process (this process is rank 0; rank 1 is spawned), on the tiny model with gloo.

Its own module: a process holds one default process group at a time. That the frames match one
process's is tests/integration/test_parallel_engine15.py's (at tiny sizes: the API's smallest
1.5 video, 640x640, takes the tiny VAE most of this test's time to decode).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

import av
from typer.testing import CliRunner

import framecast.worker.group as launch
from framecast.cli.main import app
from framecast.models.hunyuan15_i2v import MODEL_ID
from framecast.settings import get_settings

SAMPLE = Path(__file__).parents[2] / "src/framecast/assets/sample.jpg"

# What generate writes into the environment (its flags, for the processes it starts).
_WRITTEN = ("ENGINE", "HUNYUAN_MODEL", "HUNYUAN15_MODEL", "OFFLOAD", "LORA_DIR", "PARALLEL")


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in (*_WRITTEN, "GPUS", "MODELS"):
        monkeypatch.setenv(f"FRAMECAST_{name}", "")  # records the value to restore
        monkeypatch.delenv(f"FRAMECAST_{name}")
    monkeypatch.setenv("FRAMECAST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FRAMECAST_DEVICE", "cpu")
    monkeypatch.setenv("FRAMECAST_PARALLEL_TIMEOUT_SECONDS", "120")
    yield
    get_settings.cache_clear()


@pytest.mark.slow
def test_generate_runs_hunyuan_1_5_on_two_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    groups: list[Any] = []
    original = launch.group_engine

    @contextmanager
    def recorded(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with original(*args, **kwargs) as engine:
            groups.append(engine)
            yield engine

    monkeypatch.setattr(launch, "group_engine", recorded)
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(
        app,
        [
            "generate", str(SAMPLE), "--prompt", "a slow push in", "--model", MODEL_ID,
            "--engine", "hunyuan", "--hunyuan-model", "tiny-random", "--parallel", "2",
            "--aspect-ratio", "1:1", "--num-frames", "5", "--num-inference-steps", "1",
            "--guidance-scale", "1", "-o", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr[-2000:]
    assert f"wrote {out} (640x640, 5 frames" in result.stdout, result.stdout
    (group,) = groups
    meta = group.metadata()
    assert meta["pipeline"] == "HunyuanVideo 1.5 image-to-video"
    assert meta["parallel"] == {"processes": 2, "ulysses_degree": 2, "ring_degree": 1}
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (640, 640)
        assert sum(1 for _ in container.decode(stream)) == 5
