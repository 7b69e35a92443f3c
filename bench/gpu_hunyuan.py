"""HunyuanVideo-I2V speed: diffusers' stock pipeline against the engine's paths, in one process.

On a GPU it builds the full-size architecture with seeded random weights (speed does not depend
on their values; see framecast/engines/hunyuan/fullsize.py) and reports:

- the environment: GPU, driver, CUDA, cuDNN, torch, and SDPA's backend priority order;
- the token count of the benchmarked size (latent grid plus text, padded as the stock pipeline
  passes it and trimmed as the exact path does), and which SDPA kernel one attention call at
  that count runs with diffusers' boolean [B,1,1,N] mask (stock) and without it (exact);
- per path: encode time; one transformer forward on fixed inputs (the warm-up, and for compiled
  paths the compile) and its output's relative L2 error against every earlier path's; seconds
  per denoising step; VAE decode time; the 50-step end-to-end extrapolation; peak GPU memory;
  the step's FLOP over its time;
- a bf16 matmul rate and every attention backend's rate at the real shapes.

Paths: stock (diffusers' pipeline as it is), exact (the engine's default), fast (FP8 linears,
converted in place, so it comes last), and each with -compiled (regional torch.compile).

The JSON (``--out``: a file, or a folder to put one in) is rewritten after every measurement,
to a temporary file renamed over the old one, so a run killed at any moment leaves a valid file
with everything it finished; ``complete`` says whether it reached the end. Progress lines are
flushed as they happen.

    python3 -u bench/gpu_hunyuan.py --paths stock,exact --out "$OUT"
    python bench/gpu_hunyuan.py --model tiny --device cpu --width 64 --height 48 --frames 5

On a GPU, ``bench/gpu_check.sh`` runs it first (stock, exact and exact-compiled, one step each,
at 540p) and ``bench/gpu_hunyuan15.py`` after it; docs/performance.md ("The GPU plan") says what
each part answers and how long it should take. What the two scripts share (the report, timing,
peak memory, SDPA kernel detection, the environment) is ``bench/gpu_common.py``. The tiny CPU
run checks the harness end to end; its timings say nothing about the real model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from unittest import mock

import PIL.Image
import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoAttnProcessor2_0
from torch.profiler import ProfilerActivity, profile

from framecast.engines.base import GenerationRequest
from framecast.engines.hunyuan import engine as engine_module
from framecast.engines.hunyuan.blocks import transformer_blocks
from framecast.engines.hunyuan.engine import HunyuanEngine, Options, Placement, load_pipeline
from framecast.engines.hunyuan.flops import step_flops, video_tokens
from framecast.engines.hunyuan.fp8 import convert_blocks_to_fp8
from framecast.engines.hunyuan.pipeline import (
    Conditions,
    FramecastHunyuanPipeline,
    enable_official_vae_tiling,
    encode_conditions,
)
from framecast.engines.hunyuan.speedups import (
    ATTENTION_BACKENDS,
    AttentionUnavailable,
    check_attention_backend,
    compile_blocks,
    trim_padding,
)
from framecast.engines.hunyuan.weights import ModelSource
from framecast.models.hunyuan_i2v import FPS, SIZES
from gpu_common import (  # a sibling module: bench/ is on the path of a script run from it
    SDPA_OPS,
    error_text,
    log,
    peak_gib,
    peak_reset,
    sdpa_calls,
    sig,
    start_report,
    sync,
    timed,
)

PROMPT = "A lighthouse keeper climbs the spiral stairs at dusk, the lamp starts to turn."
FULL_STEPS = 50
PATHS = ("stock", "exact", "exact-compiled", "fast", "fast-compiled")


def build(model: str, device: torch.device) -> tuple[FramecastHunyuanPipeline, Placement]:
    placement = Placement.choose(str(device), "none")
    if model == "tiny":  # seeded by its builder
        return load_pipeline(ModelSource("tiny-random", "tiny-random", None), placement), placement
    from framecast.engines.hunyuan.fullsize import build_full_size_pipeline

    pipe = build_full_size_pipeline(device, placement.transformer_dtype, placement.dtype)
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    enable_official_vae_tiling(pipe.vae)  # as load_pipeline does
    return pipe, placement


@dataclass(frozen=True)
class Tokens:
    """The joint sequence of the benchmarked size: video tokens from the latent grid, text as
    the stock pipeline pads it and as the exact path trims it."""

    video: int
    text_stock: int
    text_exact: int

    @property
    def stock(self) -> int:
        return self.video + self.text_stock

    @property
    def exact(self) -> int:
        return self.video + self.text_exact

    def as_dict(self) -> dict[str, int]:
        return {
            "video": self.video,
            "text_stock": self.text_stock,
            "text_exact": self.text_exact,
            "stock": self.stock,
            "exact": self.exact,
        }


def count_tokens(
    pipe: FramecastHunyuanPipeline, device: torch.device, args: argparse.Namespace
) -> Tokens:
    # One encode of the benchmark's prompt: the text length depends on the prompt alone.
    image = PIL.Image.new("RGB", (args.width, args.height), (90, 120, 160))
    with torch.inference_mode():
        conditions = encode_conditions(pipe, image, PROMPT, None, device)
    trimmed, _ = trim_padding(conditions)
    return Tokens(
        video=video_tokens(pipe.transformer.config, args.frames, args.height, args.width),
        text_stock=int(conditions.prompt_attention_mask.shape[1]),
        text_exact=int(trimmed.prompt_attention_mask.shape[1]),
    )


def attention_inputs(
    pipe: FramecastHunyuanPipeline, device: torch.device, dtype: torch.dtype, tokens: Tokens
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of one block at the stock length ([batch, tokens, heads, head_dim], what
    diffusers' processors hand the dispatcher; the exact length is a prefix), and the mask the
    stock pipeline builds: [B,1,1,N] boolean, false on the text padding at the end."""
    config = pipe.transformer.config
    shape = (1, tokens.stock, config.num_attention_heads, config.attention_head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    mask = torch.zeros(1, 1, 1, tokens.stock, device=device, dtype=torch.bool)
    mask[..., : tokens.exact] = True
    return q, k, v, mask


def sdpa_kernel_used(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> dict[str, Any]:
    """Which kernel SDPA runs for one attention call made as the model makes it (through
    diffusers' dispatcher, at the real shape), read off the op the profiler saw: SDPA decides
    per call, so this asks the call rather than the settings."""
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            dispatch_attention_fn(q, k, v, attn_mask=mask)
            sync(q.device)
    except Exception as exc:  # out of memory, or no kernel takes this call
        return {"tokens": q.shape[1], "error": error_text(exc, 500)}
    ops = sorted(sdpa_calls(prof))
    kernels = [SDPA_OPS.get(op, op) for op in ops]
    return {
        "tokens": q.shape[1],
        "kernel": kernels[0] if len(kernels) == 1 else kernels,
        "ops": ops,
    }


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """Dense matmul FLOP/s at ``n`` x ``n`` x ``n``: what the hardware gives a plain GEMM."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _, seconds = timed(device, lambda: [a @ b for _ in range(repeats)])
    return 2 * n**3 * repeats / seconds


def attention_rates(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, exact_tokens: int
) -> dict[str, float | str]:
    """TFLOP/s of one block's attention through diffusers' dispatcher as the model calls it:
    stock (PyTorch SDPA with the mask, at the padded length), then each FRAMECAST_ATTENTION
    backend without a mask at the trimmed length; a backend that cannot run here says why."""
    device, dtype = q.device, q.dtype
    rates: dict[str, float | str] = {}
    for name in ["stock-masked", *ATTENTION_BACKENDS]:
        masked = name == "stock-masked"
        backend = None if masked else ATTENTION_BACKENDS[name][0]
        n = q.shape[1] if masked else exact_tokens
        if name not in ("stock-masked", "auto"):
            try:
                check_attention_backend(name, device, dtype)
            except AttentionUnavailable as exc:
                rates[name] = f"unavailable: {exc}"[:300]
                continue

        def call(backend: Any = backend, n: int = n, masked: bool = masked) -> Any:
            return dispatch_attention_fn(
                q[:, :n], k[:, :n], v[:, :n], attn_mask=mask if masked else None, backend=backend
            )

        try:
            call()  # warm-up
            seconds = sorted(timed(device, call)[1] for _ in range(3))[1]  # the median of three
        except Exception as exc:  # e.g. out of memory on the math kernel
            rates[name] = f"failed: {type(exc).__name__}: {exc}"[:300]
            continue
        flop = 4.0 * n * n * q.shape[2] * q.shape[3]
        rates[name] = sig(flop / seconds / 1e12)
    return rates


@dataclass
class Shared:
    """What the paths of one run share: the fixed transformer input, every finished path's
    output on it, and the first measured VAE decode."""

    latents: torch.Tensor
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    decode_s: float | None = None
    decode_path: str | None = None


class StepClock:
    """The engine's hooks, timing each denoising step from its first transformer call to the
    step-end callback: the pipeline's set-up before step 0 (the VAE encoding the image,
    preparing latents) stays out of it."""

    def __init__(self, device: torch.device, on_step: Callable[[list[float]], None]) -> None:
        self.device = device
        self.on_step = on_step
        self.starts: list[float] = []
        self.ends: list[float] = []

    def step_starts(self, _module: Any, _args: Any) -> None:
        if len(self.starts) == len(self.ends):  # with true CFG a step calls the transformer twice
            sync(self.device)
            self.starts.append(time.perf_counter())

    def progress(self, step: int, total: int, phase: str) -> None:
        if phase == "denoising":
            sync(self.device)
            self.ends.append(time.perf_counter())
            self.on_step([end - start for start, end in zip(self.starts, self.ends, strict=True)])

    def raise_if_cancelled(self) -> None:
        return None


def forward(engine: HunyuanEngine, latents: torch.Tensor, conditions: Conditions) -> torch.Tensor:
    """One transformer call on fixed inputs, through the path's attention set-up."""
    pipe, device = engine.pipe, engine.placement.device
    dtype = pipe.transformer.dtype
    with torch.inference_mode():
        if engine._attention is not None:
            conditions, engine._attention.unpadded = trim_padding(conditions)
        out: torch.Tensor = pipe.transformer(
            hidden_states=latents.to(device, dtype),
            timestep=torch.tensor([900.0], device=device),
            guidance=torch.tensor([6000.0], device=device, dtype=dtype),
            encoder_hidden_states=conditions.prompt_embeds.to(dtype),
            encoder_attention_mask=conditions.prompt_attention_mask,
            pooled_projections=conditions.pooled_prompt_embeds.to(dtype),
            return_dict=False,
        )[0]
    return out.float()


def measure(
    path: str,
    pipe: FramecastHunyuanPipeline,
    placement: Placement,
    args: argparse.Namespace,
    shared: Shared,
    record: dict[str, Any],
    save: Callable[[], None],
) -> None:
    """One path, into ``record``, saved after each measurement: encode, one forward on the
    fixed input (warm-up and error), the denoising steps, decode."""
    device = placement.device
    # Attention processors back to diffusers' own before each path; the engine installs its own.
    stock_processor = HunyuanVideoAttnProcessor2_0()  # type: ignore[no-untyped-call]
    for block in transformer_blocks(pipe.transformer):
        attn: Any = block.attn
        attn.set_processor(stock_processor)
    # In place, so a fast path is the last; the engine sees the fp8 layers and says so.
    converted = convert_blocks_to_fp8(pipe.transformer) if path.startswith("fast") else 0
    engine = HunyuanEngine(
        pipe,
        model=args.model,
        placement=placement,
        exact_speedups=path != "stock",
        attention="auto" if path == "stock" else args.attention,
    )
    if path.endswith("-compiled") and not engine.compiled:
        # The engine's own compile; only the backend swapped when asked (the tests' CPU runs).
        backend = partial(compile_blocks, backend=args.compile_backend)
        with mock.patch.object(engine_module, "compile_blocks", backend):
            engine.compile()
    record["metadata"] = engine.metadata()
    if converted:
        record["fp8_layers"] = converted
    image = PIL.Image.new("RGB", (args.width, args.height), (90, 120, 160))
    request = GenerationRequest(
        image=image,
        prompt=PROMPT,
        seed=0,
        width=args.width,
        height=args.height,
        num_frames=args.frames,
        fps=FPS,
        options={"num_inference_steps": args.warmup + args.steps},
    )
    options = Options.of(request)
    # The stock path's denoising is diffusers' own __call__ (FramecastHunyuanPipeline changes
    # only prepare_latents, and only with i2v_stability off) with diffusers' processors.
    conditions, seconds = timed(device, lambda: engine._encode(image, PROMPT, None))
    record["encode_s"] = sig(seconds)
    save()
    log(f"{path}: encode {seconds:.3f} s")

    # The same input for every path; the first call also warms up (for compiled paths: compiles).
    out, seconds = timed(device, lambda: forward(engine, shared.latents, conditions))
    record["first_forward_s"] = sig(seconds)
    # Random weights through 60 blocks: say so if they overflowed, or the errors mean nothing.
    record["first_forward_finite"] = bool(torch.isfinite(out).all())
    for earlier, reference in shared.outputs.items():
        record[f"rel_error_vs_{earlier}"] = float((out - reference).norm() / reference.norm())
    shared.outputs[path] = out
    save()
    log(f"{path}: first forward {seconds:.3f} s")

    def on_step(step_times: list[float]) -> None:
        record["step_s"] = [sig(s) for s in step_times]
        save()
        log(f"{path}: step {len(step_times)} {step_times[-1]:.3f} s")

    clock = StepClock(device, on_step)
    handle = pipe.transformer.register_forward_pre_hook(clock.step_starts)
    peak_reset(device)
    try:
        latents = engine._denoise(image, conditions, request, options, clock)
    finally:
        handle.remove()
    measured = record["step_s"][args.warmup :]
    record["mean_step_s"] = sig(sum(measured) / len(measured))
    record["denoise_peak_gib"] = peak_gib(device)

    text_tokens = (
        int(conditions.prompt_attention_mask.shape[1])
        if path == "stock"
        else int(conditions.prompt_attention_mask.sum())
    )
    flops = step_flops(pipe.transformer.config, args.frames, args.height, args.width, text_tokens)
    record["flop_per_step"] = flops.as_dict()
    record["achieved_tflops"] = sig(flops.total / record["mean_step_s"] / 1e12)
    save()

    if args.decode == "all" or (args.decode == "first" and shared.decode_s is None):
        peak_reset(device)
        frames, seconds = timed(device, lambda: engine._decode(latents))
        record["decode_s"] = sig(seconds)
        record["decode_peak_gib"] = peak_gib(device)
        if shared.decode_s is None:
            shared.decode_s, shared.decode_path = record["decode_s"], path
        save()
        log(f"{path}: decode {seconds:.3f} s")
        if args.decode_variants and path != "stock":
            record["decode_variants"] = decode_variants(engine, latents, frames)
            save()
    decode_s = record.get("decode_s", shared.decode_s)
    if decode_s is not None:
        if "decode_s" not in record:  # the VAE is the same in every path
            record["decode_s_from"] = shared.decode_path
        # Significant digits, not one decimal: a tiny CPU run's sum is a fraction of a second.
        record["end_to_end_50_steps_s"] = sig(
            record["encode_s"] + FULL_STEPS * record["mean_step_s"] + decode_s
        )


def decode_variants(engine: HunyuanEngine, latents: torch.Tensor, frames: Any) -> dict[str, Any]:
    """The VAE decode in channels-last memory layout (cuDNN's preferred one for 3D convolutions),
    timed, with how far its frames are from the default layout's (in levels of 255)."""
    vae, device = engine.pipe.vae, engine.placement.device
    vae.to(memory_format=torch.channels_last_3d)
    try:
        peak_reset(device)
        other, seconds = timed(device, lambda: engine._decode(latents))
        diff = abs(other.astype(int) - frames.astype(int))
        return {
            "channels_last_3d": {
                "decode_s": sig(seconds),
                "peak_gib": peak_gib(device),
                "max_level_diff": int(diff.max()),
                "mean_level_diff": round(float(diff.mean()), 4),
            }
        }
    finally:
        vae.to(memory_format=torch.contiguous_format)


def summary(paths: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures to read first: each path's step time and its one-step errors."""
    errors = {
        f"{record['path']} vs {key.removeprefix('rel_error_vs_')}": value
        for record in paths
        for key, value in record.items()
        if key.startswith("rel_error_vs_")
    }
    return {
        "mean_step_s": {r["path"]: r.get("mean_step_s") for r in paths},
        "one_step_rel_error": errors,
        "failed": {r["path"]: r["error"] for r in paths if "error" in r},
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", choices=["full", "tiny"], default="full")
    parser.add_argument("--device", default="cuda")
    # The API's 720p at 16:9: the official bucket, 1248x704.
    parser.add_argument("--width", type=int, default=SIZES[("16:9", "720p")][0])
    parser.add_argument("--height", type=int, default=SIZES[("16:9", "720p")][1])
    parser.add_argument("--frames", type=int, default=129)
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="denoising steps left out of the mean (the forward before them already warms up)",
    )
    parser.add_argument("--steps", type=int, default=2, help="measured denoising steps")
    parser.add_argument(
        "--paths",
        default="stock,exact",
        help=f"comma-separated, in order, of {', '.join(PATHS)}; a fast one (FP8 linears, "
        "converted in place) last",
    )
    parser.add_argument(
        "--attention",
        default="auto",
        choices=list(ATTENTION_BACKENDS),
        help="FRAMECAST_ATTENTION of the non-stock paths",
    )
    parser.add_argument(
        "--decode",
        choices=["all", "first", "none"],
        default="all",
        help="VAE decode in every path, in the first only (the VAE is the same), or in none",
    )
    parser.add_argument(
        "--decode-variants", action="store_true", help="also time the VAE decode channels-last"
    )
    parser.add_argument(
        "--rates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the attention backends' rates at the real shapes, after the paths",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the full-size random weights")
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend of the -compiled paths (aot_eager: dynamo's graphs and "
        "recompiles without inductor's code generation; for testing the harness on a CPU)",
    )
    parser.add_argument("--out", help="the JSON file, or a folder for it (default: bench/results/)")
    # For the test that a killed run keeps its figures: after this path, wait to be killed.
    parser.add_argument("--stall-after", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.paths = args.paths.split(",")
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {', '.join(PATHS)}")
    fast = [i for i, p in enumerate(args.paths) if p.startswith("fast")]
    if fast and fast != [len(args.paths) - 1]:
        parser.error("a fast path converts the model in place: one only, and last")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    device = torch.device(args.device)
    report = start_report(args, "gpu_hunyuan", device)
    data = report.data

    torch.manual_seed(args.seed)  # the same weights in every process, not only in this one
    (pipe, placement), seconds = timed(device, lambda: build(args.model, device))
    data["build_s"] = sig(seconds)
    if device.type == "cuda":
        data["gpu_free_gib_after_build"] = round(torch.cuda.mem_get_info(device)[0] / 2**30, 2)
    report.save()
    log(f"built the {args.model} model in {seconds:.1f} s")

    dtype = placement.transformer_dtype
    tokens = count_tokens(pipe, device, args)
    data["tokens"] = tokens.as_dict()
    q, k, v, mask = attention_inputs(pipe, device, dtype, tokens)
    data["sdpa_kernel"] = {
        "masked": sdpa_kernel_used(q, k, v, mask),
        "unmasked": sdpa_kernel_used(
            q[:, : tokens.exact], k[:, : tokens.exact], v[:, : tokens.exact], None
        ),
    }
    del q, k, v, mask
    report.save()
    log(f"tokens {tokens.as_dict()}; SDPA kernels {data['sdpa_kernel']}")

    n = 8192 if device.type == "cuda" else 512
    data["matmul_tflops"] = sig(matmul_rate(device, dtype, n) / 1e12)
    report.save()
    log(f"matmul {data['matmul_tflops']} TFLOP/s")

    config = pipe.transformer.config
    latent_shape = (
        1,
        config.in_channels,
        (args.frames - 1) // 4 + 1,
        args.height // 8,
        args.width // 8,
    )
    shared = Shared(torch.randn(latent_shape, generator=torch.Generator().manual_seed(0)))
    data["paths"] = []
    for path in args.paths:
        record: dict[str, Any] = {"path": path}
        data["paths"].append(record)
        try:
            measure(path, pipe, placement, args, shared, record, report.save)
        except Exception as exc:  # keep what the other paths measure
            traceback.print_exc()
            record["error"] = error_text(exc)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        data["summary"] = summary(data["paths"])
        report.save()
        log(f"{path}: done")
        if path == args.stall_after:
            log(f"stalling after {path} (--stall-after)")
            time.sleep(3600)

    if args.rates:
        q, k, v, mask = attention_inputs(pipe, device, dtype, tokens)
        data["attention_tflops"] = attention_rates(q, k, v, mask, tokens.exact)
        del q, k, v, mask
        report.save()
        log(f"attention TFLOP/s {data['attention_tflops']}")

    data["complete"] = True
    report.save()
    print(json.dumps(data["summary"], indent=2), flush=True)
    log(f"wrote {report.path}")
    return 1 if data["summary"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
