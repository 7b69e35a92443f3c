"""The GPU benchmark's harness runs end to end on the tiny model on the CPU.

Its timings here mean nothing; what is checked is that every figure the GPU run reports is
produced, and that the engine's path computes what the stock path does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

BENCH = Path(__file__).parents[2] / "bench" / "gpu_hunyuan.py"


def test_harness_reports_every_figure_for_every_path(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--width",
            "64",
            "--height",
            "48",
            "--frames",
            "5",
            "--paths",
            "stock,exact,fast",
            "--attention",
            "flash",  # PyTorch's flash kernel has a CPU version
            "--decode-variants",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["environment"]["torch"] and report["matmul_tflops"] > 0
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
        assert len(path["step_s"]) == 4 and path["mean_step_s"] > 0
        assert path["encode_s"] > 0 and path["decode_s"] > 0
        assert path["end_to_end_50_steps_s"] >= 50 * path["mean_step_s"]
        assert path["flop_per_step"]["video_tokens"] == 2 * 3 * 4
    # The exact path attends only to real text tokens, and computes the same step.
    assert exact["flop_per_step"]["text_tokens"] < stock["flop_per_step"]["text_tokens"]
    assert exact["rel_error_vs_stock"] < 1e-5
    # The fast path deviates, by about what e4m3 rounding predicts, and says by how much.
    assert 1e-4 < fast["rel_error_vs_exact"] < 0.1
