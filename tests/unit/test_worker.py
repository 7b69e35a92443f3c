from __future__ import annotations

from framecast.worker.loop import overall_progress


def test_overall_progress_only_goes_up_across_model_phases() -> None:
    steps = [("encoding", 0, 1), ("encoding", 1, 1)]
    steps += [("denoising", i, 50) for i in range(1, 51)]
    steps += [("decoding", 0, 1), ("decoding", 1, 1)]
    values = [overall_progress(*s) for s in steps]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 1.0
    assert overall_progress("rendering", 64, 128) == 0.5  # engines with one phase
