"""The hunyuan engine behind the real server and CLI, on the tiny random model."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

pytest.importorskip("diffusers")

from .conftest import SUBMIT_PATH, Server, wait_for

SAMPLE = Path(__file__).parents[2] / "src/framecast/assets/sample.jpg"


@pytest.fixture(scope="module")
def server(make_server: Callable[..., Server]) -> Server:
    s = make_server(engine="hunyuan", hunyuan_model="tiny-random", allow_private_urls="true")
    s.start()
    return s


def test_submit_progress_complete_and_the_mp4_is_what_was_asked(
    server: Server, image_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = image_server
    with server.client() as c:
        ready = c.get("/readyz").json()
        assert [w["engine"] for w in ready["workers"]] == ["hunyuan"]
        r = c.post(
            SUBMIT_PATH,
            json={
                "prompt": "the boats rock gently in the harbour",
                "image_url": f"{base}/harbour.jpg",
                "resolution": "360p",
                "num_frames": 5,
                "num_inference_steps": 4,
                "seed": 11,
            },
        )
        assert r.status_code == 200, r.text
        rid = r.json()["request_id"]
        seen: list[dict[str, Any]] = []
        final = wait_for(c, rid, {"completed", "failed", "cancelled"}, seen=seen)
        assert final["status"] == "completed", final
        running = [b for b in seen if b["status"] == "in_progress"]
        progress = [b["progress"] for b in running]
        assert progress == sorted(progress)
        assert {b["phase"] for b in running} & {"encoding", "denoising", "decoding"}
        res = c.get(f"/v1/requests/{rid}/result").json()

    meta = res["metadata"]
    assert meta["engine"] == "hunyuan" and meta["model"] == "tiny-random"
    assert meta["tiny_random"] is True and "not HunyuanVideo-I2V output" in meta["warning"]
    assert (meta["width"], meta["height"], meta["num_frames"]) == (608, 352, 5)
    assert (meta["num_inference_steps"], meta["resolution"]) == (4, "360p")
    video = httpx.get(res["output"]["video"])
    assert video.status_code == 200
    path = tmp_path / "out.mp4"
    path.write_bytes(video.content)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (608, 352)
        assert sum(1 for _ in container.decode(stream)) == 5


def test_one_worker_serves_both_tiny_models_and_1_5_runs_end_to_end(
    server: Server, tmp_path: Path
) -> None:
    data_uri = "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()
    with server.client() as c:
        (worker,) = c.get("/readyz").json()["workers"]
        assert sorted(worker["serves"]) == [
            "tencent/hunyuan-video-v1.5/image-to-video",
            "tencent/hunyuan/image-to-video",
        ]
        r = c.post(
            "/v1/models/tencent/hunyuan-video-v1.5/image-to-video",
            json={
                "prompt": "a slow push in",
                "image": data_uri,
                "num_frames": 5,
                "num_inference_steps": 2,
                "aspect_ratio": "1:1",
            },
        )
        assert r.status_code == 200, r.text
        rid = r.json()["request_id"]
        final = wait_for(c, rid, {"completed", "failed", "cancelled"})
        assert final["status"] == "completed", final
        res = c.get(f"/v1/requests/{rid}/result").json()
    meta = res["metadata"]
    assert meta["model_id"] == "tencent/hunyuan-video-v1.5/image-to-video"
    assert meta["engine"] == "hunyuan" and meta["tiny_random"] is True
    assert (meta["width"], meta["height"], meta["num_frames"]) == (640, 640, 5)
    assert meta["num_inference_steps"] == 2
    path = tmp_path / "out15.mp4"
    path.write_bytes(httpx.get(res["output"]["video"]).content)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (640, 640)
        assert sum(1 for _ in container.decode(stream)) == 5


@pytest.mark.parametrize(
    ("extra", "field", "needle"),
    [
        ({"num_frames": 6}, "num_frames", "4n+1"),
        ({"num_frames": 133}, "num_frames", "129"),
        ({"resolution": "480p"}, "resolution", "'360p'"),
        ({"num_inference_steps": 0}, "num_inference_steps", "greater than or equal to 1"),
        ({"flow_shift": -1.0}, "flow_shift", "greater than 0"),
        ({"cfg_scale": 0.5}, "cfg_scale", "greater than or equal to 1"),
        ({"negative_prompt": "blurry"}, "negative_prompt", "cfg_scale > 1"),
        ({"i2v_stability": "yes"}, "i2v_stability", "boolean"),
    ],
)
def test_out_of_range_model_inputs_are_422_at_submit(
    server: Server, extra: dict[str, Any], field: str, needle: str
) -> None:
    with server.client() as c:
        r = c.post(SUBMIT_PATH, json={"prompt": "p", "image_url": "data:,", **extra})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert field in message and needle in message, message


def _framecast(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framecast", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_generate_runs_the_tiny_model_with_every_input_as_a_flag(tmp_path: Path) -> None:
    out = tmp_path / "tiny.mp4"
    run = _framecast(
        "generate",
        str(SAMPLE),
        "--prompt",
        "waves",
        "-o",
        str(out),
        "--engine",
        "hunyuan",
        "--hunyuan-model",
        "tiny-random",
        "--aspect-ratio",
        "9:16",
        "--resolution",
        "360p",
        "--num-frames",
        "5",
        "--num-inference-steps",
        "2",
        "--no-i2v-stability",
        "--flow-shift",
        "12",
        "--cfg-scale",
        "2",
        "--negative-prompt",
        "blurry",
        "--seed",
        "5",
        env={"FRAMECAST_DATA_DIR": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr
    assert "engine hunyuan, model tiny-random)" in run.stdout
    assert "TINY RANDOM MODEL" in run.stderr
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (352, 608)
        assert sum(1 for _ in c.decode(s)) == 5


def test_generate_with_weights_that_are_not_there_says_what_to_do(tmp_path: Path) -> None:
    run = _framecast(
        "generate",
        str(SAMPLE),
        "--prompt",
        "x",
        "--engine",
        "hunyuan",
        "--hunyuan-model",
        str(tmp_path / "no-such-model"),
        env={"FRAMECAST_DATA_DIR": str(tmp_path)},
    )
    assert run.returncode == 2
    assert "missing: the directory" in run.stderr and "framecast weights download" in run.stderr


@pytest.mark.parametrize(
    ("args", "repo_id"),
    [
        ((), "hunyuanvideo-community/HunyuanVideo-I2V"),
        (
            ("--model", "tencent/hunyuan-video-v1.5/image-to-video", "--checkpoint", "720p"),
            "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_i2v",
        ),
    ],
    ids=["i2v", "1.5-720p"],
)
@pytest.mark.parametrize("offline", ["1", ""])
def test_weights_download_without_network_fails_at_once_and_clearly(
    tmp_path: Path, offline: str, args: tuple[str, ...], repo_id: str
) -> None:
    # Each model and checkpoint's choice, with a hub faked: tests/unit/test_cli_models.py.
    started = time.monotonic()
    run = _framecast(
        "weights",
        "download",
        *args,
        "--to",
        str(tmp_path / "w"),
        env={"HF_HUB_OFFLINE": offline, "HF_HUB_CACHE": str(tmp_path / "cache")},
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stdout == f"downloading {repo_id} ...\n"
    assert f"cannot download {repo_id}" in run.stderr
    assert ("HF_HUB_OFFLINE" in run.stderr) == bool(offline)
    assert time.monotonic() - started < 60


def test_the_fast_path_is_chosen_by_setting_and_said_in_results(
    make_server: Callable[..., Server],
) -> None:
    # What the setting reaches through the server and its worker. fp8-weight, not fp8: fp8
    # compiles the blocks, minutes of a loaded CPU here; the compiled fp8 engine, its label
    # and its video are tests/unit/test_hunyuan_fp8.py's. The I2V model alone: 1.5's fast
    # path has its own tests (tests/unit/test_hunyuan15_speedups.py).
    server = make_server(
        engine="hunyuan",
        hunyuan_model="tiny-random",
        linear="fp8-weight",
        models="tencent/hunyuan/image-to-video",
    )
    server.start()
    with server.client() as c:
        r = c.post(
            SUBMIT_PATH,
            json={
                "prompt": "a kite climbs",
                "image_url": "data:image/jpeg;base64,"
                + base64.b64encode(SAMPLE.read_bytes()).decode(),
                "resolution": "360p",
                "num_frames": 5,
                "num_inference_steps": 2,
            },
        )
        assert r.status_code == 200, r.text
        rid = r.json()["request_id"]
        final = wait_for(c, rid, {"completed", "failed", "cancelled"})
        assert final["status"] == "completed", final
        meta = c.get(f"/v1/requests/{rid}/result").json()["metadata"]
    assert meta["path"] == "fast" and meta["linear"].startswith("fp8-weight (e4m3 weights")
    assert meta["attention"] == "auto"


def test_an_attention_kernel_that_cannot_run_stops_generate_before_it_starts(
    tmp_path: Path,
) -> None:
    run = _framecast(
        "generate",
        str(SAMPLE),
        "--prompt",
        "waves",
        "-o",
        str(tmp_path / "never.mp4"),
        "--engine",
        "hunyuan",
        "--hunyuan-model",
        "tiny-random",
        env={"FRAMECAST_DATA_DIR": str(tmp_path), "FRAMECAST_ATTENTION": "flash-attn-3"},
    )
    assert run.returncode != 0
    assert "FRAMECAST_ATTENTION=flash-attn-3 needs the Python module flash_attn_interface" in (
        run.stderr + run.stdout
    )
    assert not (tmp_path / "never.mp4").exists()
