"""What the GPU benchmarks share: progress lines, the JSON report, timing, peak memory, which
SDPA kernel attention ran on, and the environment.

``bench/gpu_hunyuan.py`` (HunyuanVideo-I2V) and ``bench/gpu_hunyuan15.py`` (HunyuanVideo 1.5)
import it as a sibling module (``bench/`` is on the path of a script run from it);
``bench/gpu_check.sh`` runs both. diffusers and transformers are imported only to report their
versions, so importing this costs torch alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend

SDPA_OPS = {
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "cpu (flash_attention_for_cpu)",
}
"""The op SDPA dispatches to, as the profiler names it, and the kernel that op is."""

_STARTED = time.perf_counter()


def log(message: str) -> None:
    # Flushed at once: a run killed at its time limit still shows how far it got.
    print(f"[{time.perf_counter() - _STARTED:7.1f} s] {message}", flush=True)


def sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits: a tiny model's rate on a CPU stays above zero
    where rounding to two decimals would make it 0.0."""
    return float(f"{x:.{digits}g}")


def error_text(exc: BaseException, limit: int = 2000) -> str:
    return f"{type(exc).__name__}: {exc}"[:limit]


class Report:
    """A benchmark's JSON, rewritten whole after every measurement.

    Each version goes to a temporary file beside the target and is renamed over it (atomic on
    POSIX), so a reader, or a kill at any moment, finds the previous version or the new one,
    never half a file. No fsync: the files must survive the process, not the machine.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"complete": False}
        path.parent.mkdir(parents=True, exist_ok=True)

    def save(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(temporary, self.path)


def output_path(out: str | None, stem: str) -> Path:
    """``--out`` as given if it names a file; a folder (existing, or written with a trailing
    slash, like the device machine's $OUT) gets a file named ``stem`` and the time."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stem}-{stamp}.json"
    if out is None:
        return Path(__file__).parent / "results" / name
    if out.endswith("/") or Path(out).is_dir():
        return Path(out) / name
    return Path(out)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """The most GPU memory tensors held since :func:`peak_reset` (None on the CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def sdpa_calls(prof: torch.profiler.profile) -> dict[str, int]:
    """The SDPA kernels a profiled stretch ran, by op name (``aten::_scaled_dot_product_*``),
    with how many calls each. SDPA chooses per call (mask, shapes, dtype, GPU), so this reads
    the calls rather than the settings."""
    calls: Counter[str] = Counter()
    for event in prof.key_averages():
        if event.key.startswith("aten::_scaled_dot"):
            calls[event.key] += event.count
    return dict(sorted(calls.items()))


def kernel_calls(prof: torch.profiler.profile) -> dict[str, int]:
    """:func:`sdpa_calls` by kernel name (``flash``, ``cudnn``, ``efficient``, ``math``, ...)."""
    kernels: Counter[str] = Counter()
    for op, count in sdpa_calls(prof).items():
        kernels[SDPA_OPS.get(op, op)] += count
    return dict(kernels)


def sdpa_settings() -> dict[str, Any]:
    """SDPA's backend priority order and which backends are enabled.

    torch (2.13 included) has no public getter for the order: ``torch.nn.attention.sdpa_kernel
    (..., set_priority=True)`` sets it, and reads it back through the private
    ``torch._C._get_sdp_priority_order`` used here. The order alone does not settle which kernel
    runs (each backend also checks the call's shapes, mask, dtype and GPU), hence the measured
    choice next to it in the report.
    """
    names = {backend.value: name for name, backend in SDPBackend.__members__.items()}
    getter = getattr(torch._C, "_get_sdp_priority_order", None)
    order = [names.get(int(i), str(i)) for i in getter()] if getter is not None else None
    cuda: Any = torch.backends.cuda  # its getters are untyped
    return {
        "priority_order": order,
        "enabled": {
            "cudnn": cuda.cudnn_sdp_enabled(),
            "flash": cuda.flash_sdp_enabled(),
            "efficient": cuda.mem_efficient_sdp_enabled(),
            "math": cuda.math_sdp_enabled(),
        },
        # Builds differ in whether cuDNN attention comes first; these variables change it.
        "environment": {k: v for k, v in os.environ.items() if k.startswith("TORCH_CUDNN")},
    }


def environment(device: torch.device) -> dict[str, Any]:
    import diffusers
    import transformers

    cudnn: Any = torch.backends.cudnn  # untyped; version() is None where torch has no cuDNN

    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "cudnn": cudnn.version(),
        "sdpa": sdpa_settings(),
        # Where the caching allocator was configured (expandable segments change the peak).
        "allocator": {k: v for k, v in os.environ.items() if k.endswith("ALLOC_CONF")},
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        env["gpu_total_gib"] = round(
            torch.cuda.get_device_properties(device).total_memory / 2**30, 2
        )
        env["cuda"] = torch.version.cuda
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def start_report(args: argparse.Namespace, stem: str, device: torch.device) -> Report:
    """The run's report, saved at once with the environment and the arguments, so even a run
    that dies building its model leaves them."""
    report = Report(output_path(args.out, f"{stem}-{args.model}-{device.type}"))
    report.data["environment"] = environment(device)
    report.data["args"] = vars(args)
    report.save()
    log(f"writing {report.path}")
    return report
