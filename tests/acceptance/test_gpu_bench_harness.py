"""The GPU benchmarks' harness runs end to end on the tiny models on the CPU.

Its timings here mean nothing; what is checked is that every figure the GPU run reports is
produced, that the engine's path computes what the stock path does, that a run killed
part-way (as a device machine's time limit does) leaves every figure it finished on disk, and
that the one GPU check (bench/gpu_check.sh: HunyuanVideo-I2V, then HunyuanVideo 1.5) runs every
part and writes every part's figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

BENCH = Path(__file__).parents[2] / "bench" / "gpu_hunyuan.py"
CHECK = Path(__file__).parents[2] / "bench" / "gpu_check.sh"
TINY = ["--model", "tiny", "--device", "cpu", "--width", "64", "--height", "48", "--frames", "5"]


def run_bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    """The benchmark on the tiny model on the CPU, to completion; its report."""
    out = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), *TINY, *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_harness_reports_every_figure_for_every_path(tmp_path: Path) -> None:
    report = run_bench(
        tmp_path,
        "--paths",
        "stock,exact,fast",
        "--warmup",
        "1",
        "--steps",
        "2",
        "--attention",
        "flash",  # PyTorch's flash kernel has a CPU version
        "--decode-variants",
    )
    assert report["complete"] is True
    env = report["environment"]
    assert env["torch"] and "cudnn" in env  # None on a CPU-only torch
    assert {"FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"} <= set(env["sdpa"]["priority_order"])
    # Real token counts: 2 latent frames of 3x4 patches, the text padded and trimmed.
    tokens = report["tokens"]
    assert tokens["video"] == 2 * 3 * 4
    assert tokens["exact"] == tokens["video"] + tokens["text_exact"] < tokens["stock"]
    for call, n in (("masked", tokens["stock"]), ("unmasked", tokens["exact"])):
        kernel = report["sdpa_kernel"][call]
        assert kernel["tokens"] == n and kernel["kernel"].startswith("cpu"), kernel
    # Unrounded rates: the tiny model's are far below 0.01 TFLOP/s, and must not read 0.0.
    assert report["matmul_tflops"] > 0
    rates = report["attention_tflops"]
    assert set(rates) == {
        "stock-masked",
        "auto",
        "cudnn",
        "flash",
        "flash-attn",
        "flash-attn-3",
        "sage",
    }
    assert rates["stock-masked"] > 0 and rates["auto"] > 0 and rates["flash"] > 0
    assert rates["cudnn"].startswith("unavailable: FRAMECAST_ATTENTION=cudnn cannot run on cpu")
    stock, exact, fast = report["paths"]
    assert (stock["path"], exact["path"], fast["path"]) == ("stock", "exact", "fast")
    assert exact["metadata"]["attention"] == fast["metadata"]["attention"] == "flash"
    assert stock["metadata"]["attention_mask"] == "stock"
    assert (exact["metadata"]["path"], fast["metadata"]["path"]) == ("exact", "fast")
    assert fast["fp8_layers"] == 17
    assert "decode_variants" not in stock
    channels_last = exact["decode_variants"]["channels_last_3d"]
    assert channels_last["decode_s"] > 0 and channels_last["max_level_diff"] <= 2
    for path in (stock, exact, fast):
        assert len(path["step_s"]) == 3 and path["mean_step_s"] > 0
        assert path["encode_s"] > 0 and path["decode_s"] > 0 and path["first_forward_s"] > 0
        assert path["end_to_end_50_steps_s"] >= 50 * path["mean_step_s"]
        assert path["flop_per_step"]["video_tokens"] == tokens["video"]
        assert path["achieved_tflops"] > 0
    # The exact path attends only to real text tokens, and computes the same step.
    assert exact["flop_per_step"]["text_tokens"] == tokens["text_exact"]
    assert stock["flop_per_step"]["text_tokens"] == tokens["text_stock"]
    errors = report["summary"]["one_step_rel_error"]
    assert errors["exact vs stock"] == exact["rel_error_vs_stock"] < 1e-5
    # The fast path deviates, by about what e4m3 rounding predicts, and says by how much.
    assert 1e-4 < errors["fast vs exact"] < 0.1
    assert report["summary"]["failed"] == {}


@pytest.mark.slow
def test_harness_times_both_compiled_paths_in_one_run(tmp_path: Path) -> None:
    # The GPU plan's FP8 question (fp8 + compile against exact-compiled, in the same run): the
    # fast path converts the compiled model in place, so its blocks must compile again. With
    # aot_eager: dynamo's graphs and guards decide that, and inductor's C++ code generation
    # took a minute and more of a loaded CPU here; the engine compiled by inductor, fp8 too,
    # is tests/unit's (test_hunyuan_cache.py, test_hunyuan_fp8.py).
    report = run_bench(
        tmp_path,
        "--paths",
        "exact-compiled,fast-compiled",
        "--steps",
        "1",
        "--decode",
        "none",
        "--no-rates",
        "--compile-backend",
        "aot_eager",
    )
    exact, fast = report["paths"]
    assert (exact["path"], fast["path"]) == ("exact-compiled", "fast-compiled")
    assert exact["metadata"]["compiled"] is fast["metadata"]["compiled"] is True
    assert (exact["metadata"]["path"], fast["metadata"]["path"]) == ("exact", "fast")
    assert fast["fp8_layers"] == 17 and "fp8_layers" not in exact
    for path in (exact, fast):
        assert path["first_forward_finite"] is True and path["first_forward_s"] > 0
        assert len(path["step_s"]) == 1 and path["mean_step_s"] > 0
        assert path["achieved_tflops"] > 0
    summary = report["summary"]
    assert summary["mean_step_s"] == {
        "exact-compiled": exact["mean_step_s"],
        "fast-compiled": fast["mean_step_s"],
    }
    error = summary["one_step_rel_error"]["fast-compiled vs exact-compiled"]
    assert error == fast["rel_error_vs_exact-compiled"]
    assert 1e-4 < error < 0.1  # e4m3 rounding, as eagerly: the fp8 graph, not the exact one
    assert summary["failed"] == {}


def test_a_killed_run_keeps_every_finished_measurement(tmp_path: Path) -> None:
    """Killed (SIGKILL: no clean-up runs) after its first path, the run has already written
    that path's figures, and its progress reached stdout as it happened."""
    folder = tmp_path / "out"  # a folder, as the device machine's $OUT
    folder.mkdir()
    bench = subprocess.Popen(
        [
            sys.executable,
            str(BENCH),
            *TINY,
            "--paths",
            "stock,exact",
            "--steps",
            "1",
            "--decode",
            "first",
            "--no-rates",
            "--stall-after",
            "stock",
            "--out",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    watchdog = threading.Timer(120, bench.kill)  # if the line never comes, fail, don't hang
    watchdog.start()
    lines = []
    try:
        assert bench.stdout is not None
        for line in bench.stdout:
            lines.append(line)
            if "stalling after stock" in line:
                bench.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        bench.kill()
        bench.wait(timeout=30)
    assert any("stalling after stock" in line for line in lines), "".join(lines)
    assert bench.returncode == -signal.SIGKILL

    (out,) = folder.iterdir()  # the report, and no temporary file beside it
    report = json.loads(out.read_text())
    assert report["complete"] is False
    assert report["tokens"]["video"] == 24 and report["sdpa_kernel"]["masked"]["kernel"]
    (stock,) = report["paths"]
    assert stock["path"] == "stock" and "error" not in stock
    assert len(stock["step_s"]) == 1 and stock["mean_step_s"] > 0
    assert stock["encode_s"] > 0 and stock["decode_s"] > 0 and stock["first_forward_s"] > 0
    assert "attention_tflops" not in report


@pytest.mark.slow
def test_the_gpu_check_runs_every_part_on_the_tiny_models(tmp_path: Path) -> None:
    """bench/gpu_check.sh --cpu-tiny: the GPU check's parts, in its order, with the tiny models
    at tiny sizes; every part's JSON holds its figures (peak memory is None on the CPU)."""
    out = tmp_path / "out"
    run = subprocess.run(
        ["bash", str(CHECK), "--cpu-tiny", str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    check = json.loads((out / "check.json").read_text())
    assert check["complete"] is True and check["mode"] == "cpu-tiny"
    parts = [(p["part"], p["rc"], p["timed_out"], p["json"]) for p in check["parts"]]
    assert parts == [
        ("hunyuan_v1", 0, False, "hunyuan_v1.json"),
        ("hunyuan15", 0, False, "hunyuan15.json"),
    ]
    assert all(0 < p["limit_s"] <= check["budget_s"] for p in check["parts"])
    # Progress reached stdout, and each part's log, as it went.
    assert "exact-compiled: done" in (out / "hunyuan_v1.log").read_text()
    assert "exact-720p: done" in (out / "hunyuan15.log").read_text()
    assert "hunyuan15: exit status 0" in run.stdout

    # 1 and 2: HunyuanVideo-I2V, stock against exact and exact-compiled, one step each.
    v1 = json.loads((out / "hunyuan_v1.json").read_text())
    assert v1["complete"] is True and v1["summary"]["failed"] == {}
    assert [p["path"] for p in v1["paths"]] == ["stock", "exact", "exact-compiled"]
    for path in v1["paths"]:
        assert len(path["step_s"]) == 1 and path["mean_step_s"] > 0
        assert path["first_forward_s"] > 0 and path["first_forward_finite"] is True
        assert path["denoise_peak_gib"] is None and "decode_s" not in path
    assert v1["paths"][2]["metadata"]["compiled"] is True
    errors = v1["summary"]["one_step_rel_error"]
    assert set(errors) == {"exact vs stock", "exact-compiled vs stock", "exact-compiled vs exact"}
    assert all(error < 1e-5 for error in errors.values()), errors
    for call in ("masked", "unmasked"):
        assert v1["sdpa_kernel"][call]["kernel"].startswith("cpu"), v1["sdpa_kernel"]
    assert v1["attention_tflops"]["auto"] > 0

    # 3: HunyuanVideo 1.5, exact then stock, at both sizes.
    h15 = json.loads((out / "hunyuan15.json").read_text())
    assert h15["complete"] is True and h15["summary"]["failed"] == {}
    runs = {r["run"]: r for r in h15["runs"]}
    assert list(runs) == ["exact-480p", "exact-720p", "stock-480p", "stock-720p"]
    video = {"480p": 2 * 3 * 4, "720p": 2 * 4 * 6}  # latent frames x height x width
    for name, r in runs.items():
        path, resolution = name.split("-")
        assert r["forward_s"] > 0 and r["first_forward_s"] > 0 and r["finite"] is True
        assert r["step_s"] == pytest.approx(2 * r["forward_s"], rel=1e-3)  # CFG: two passes
        assert r["peak_gib"] is None and r["achieved_tflops"] > 0
        assert r["attention_kernel"].startswith("cpu") and sum(r["attention_kernels"].values())
        # Text as each path passes it: 256 Qwen tokens, no ByT5 token, 729 image tokens
        # valid; stock keeps the padding (1000 Qwen, 256 ByT5).
        text = 256 + 729 if path == "exact" else 1000 + 256 + 729
        assert r["tokens"] == {
            "video": video[resolution],
            "text": text,
            "total": video[resolution] + text,
        }
        assert r["flop_per_forward"]["total_flop"] > 0
    for resolution in ("480p", "720p"):
        exact, stock = runs[f"exact-{resolution}"], runs[f"stock-{resolution}"]
        assert exact["unpadded"] is True and "unpadded" not in stock  # exact ran unmasked
        assert stock[f"rel_error_vs_exact-{resolution}"] < 1e-5
    assert h15["summary"]["unpadded"] == {"exact-480p": True, "exact-720p": True}
