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


def test_harness_reports_every_figure_for_both_paths(tmp_path: Path) -> None:
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
            "stock,exact",
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
    assert set(report["attention_tflops"]) == {"masked", "unmasked"}
    stock, exact = report["paths"]
    assert (stock["path"], exact["path"]) == ("stock", "exact")
    for path in (stock, exact):
        assert len(path["step_s"]) == 4 and path["mean_step_s"] > 0
        assert path["encode_s"] > 0 and path["decode_s"] > 0
        assert path["end_to_end_50_steps_s"] >= 50 * path["mean_step_s"]
        assert path["flop_per_step"]["video_tokens"] == 2 * 3 * 4
    # The exact path attends only to real text tokens, and computes the same step.
    assert exact["flop_per_step"]["text_tokens"] < stock["flop_per_step"]["text_tokens"]
    assert exact["rel_error_vs_stock"] < 1e-5
