"""HunyuanVideo-I2V speed: diffusers' stock pipeline against the engine's paths, in one process.

On a GPU it builds the full-size architecture with random weights (speed does not depend on
their values; see framecast/engines/hunyuan/fullsize.py) and reports, per path:
encode time, mean seconds per denoising step after warm-up, VAE decode time, the 50-step
end-to-end extrapolation, peak GPU memory, and the step's FLOP divided by its time next to a
bf16 matmul rate and an attention rate measured in the same run.

    python bench/gpu_hunyuan.py --paths stock            # the baseline (one command)
    python bench/gpu_hunyuan.py --paths exact            # the engine's default path
    python bench/gpu_hunyuan.py --paths exact,fast       # plus FP8 linears (last: in place)
    python bench/gpu_hunyuan.py --paths exact --attention cudnn
    python bench/gpu_hunyuan.py --model tiny --device cpu --width 64 --height 48 --frames 5

Writes JSON to bench/results/ (or --out). The tiny CPU run checks the harness end to end; its
timings say nothing about the real model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoAttnProcessor2_0

from framecast.engines.base import GenerationRequest
from framecast.engines.hunyuan.engine import HunyuanEngine, Options, Placement, load_pipeline
from framecast.engines.hunyuan.flops import step_flops
from framecast.engines.hunyuan.fp8 import convert_blocks_to_fp8
from framecast.engines.hunyuan.pipeline import FramecastHunyuanPipeline
from framecast.engines.hunyuan.speedups import (
    ATTENTION_BACKENDS,
    AttentionUnavailable,
    check_attention_backend,
    transformer_blocks,
)
from framecast.engines.hunyuan.weights import ModelSource

PROMPT = "A lighthouse keeper climbs the spiral stairs at dusk, the lamp starts to turn."
FULL_STEPS = 50


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
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """Dense matmul FLOP/s at ``n`` x ``n`` x ``n``: what the hardware gives a plain GEMM."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _, seconds = timed(device, lambda: [a @ b for _ in range(repeats)])
    return 2 * n**3 * repeats / seconds


def attention_rates(
    device: torch.device, dtype: torch.dtype, tokens: int, heads: int, dim: int
) -> dict[str, float | str]:
    """FLOP/s of one block's attention over the joint sequence, through diffusers' dispatcher
    as the model calls it: stock (PyTorch SDPA with diffusers' all-true mask), then each
    FRAMECAST_ATTENTION backend without a mask; a backend that cannot run here says why."""
    q, k, v = (torch.randn(1, tokens, heads, dim, device=device, dtype=dtype) for _ in range(3))
    flop = 4.0 * tokens * tokens * heads * dim
    mask = torch.ones(1, 1, 1, tokens, device=device, dtype=torch.bool)
    rates: dict[str, float | str] = {}
    for name in ["stock-masked", *ATTENTION_BACKENDS]:
        backend = None if name == "stock-masked" else ATTENTION_BACKENDS[name][0]
        attn_mask = mask if name == "stock-masked" else None
        if name not in ("stock-masked", "auto"):
            try:
                check_attention_backend(name, device, dtype)
            except AttentionUnavailable as exc:
                rates[name] = f"unavailable: {exc}"[:300]
                continue

        def call(backend: Any = backend, attn_mask: Any = attn_mask) -> Any:
            return dispatch_attention_fn(q, k, v, attn_mask=attn_mask, backend=backend)

        call()  # warm-up
        seconds = sorted(timed(device, call)[1] for _ in range(3))[1]  # the median of three
        rates[name] = round(flop / seconds / 1e12, 2)
    return rates


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    import diffusers
    import transformers

    env["diffusers"], env["transformers"] = diffusers.__version__, transformers.__version__
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
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


def build(model: str, device: torch.device) -> tuple[FramecastHunyuanPipeline, Placement]:
    placement = Placement.choose(str(device), "none")
    if model == "tiny":
        return load_pipeline(ModelSource("tiny-random", "tiny-random", None), placement), placement
    from framecast.engines.hunyuan.fullsize import build_full_size_pipeline

    pipe = build_full_size_pipeline(device, placement.transformer_dtype, placement.dtype)
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.enable_tiling()
    return pipe, placement


def measure(
    path: str,
    pipe: FramecastHunyuanPipeline,
    placement: Placement,
    args: argparse.Namespace,
    probe: dict[str, torch.Tensor],
) -> dict[str, Any]:
    """One path: encode, warm-up + measured steps, decode, one fixed transformer call."""
    device = placement.device
    # Attention processors back to diffusers' own before each path; the engine installs its own.
    stock_processor = HunyuanVideoAttnProcessor2_0()
    for block in transformer_blocks(pipe.transformer):
        block.attn.set_processor(stock_processor)
    # In place, so "fast" is the last path; the engine sees the fp8 layers and says so.
    converted = convert_blocks_to_fp8(pipe.transformer) if path == "fast" else 0
    engine = HunyuanEngine(
        pipe,
        model=args.model,
        placement=placement,
        exact_speedups=path != "stock",
        attention="auto" if path == "stock" else args.attention,
    )
    if path == "exact-compiled":
        engine.compile()
    image = PIL.Image.new("RGB", (args.width, args.height), (90, 120, 160))
    request = GenerationRequest(
        image=image,
        prompt=PROMPT,
        seed=0,
        width=args.width,
        height=args.height,
        num_frames=args.frames,
        options={"num_inference_steps": args.warmup + args.steps},
    )
    options = Options.of(request)
    result: dict[str, Any] = {"path": path, "metadata": engine.metadata()}
    if converted:
        result["fp8_layers"] = converted
    # The stock path's denoising is diffusers' own __call__ (FramecastHunyuanPipeline changes
    # only prepare_latents, and only with i2v_stability off) with diffusers' processors.
    conditions, seconds = timed(device, lambda: engine._encode(image, PROMPT, None))
    result["encode_s"] = round(seconds, 3)

    stamps: list[float] = []

    class Clock:
        def progress(self, step: int, total: int, phase: str) -> None:
            if phase == "denoising":
                sync(device)
                stamps.append(time.perf_counter())

        def raise_if_cancelled(self) -> None:
            return None

    peak_reset(device)
    sync(device)
    start = time.perf_counter()
    latents = engine._denoise(image, conditions, request, options, Clock())
    step_times = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
    measured = step_times[args.warmup :]
    result["step_s"] = [round(s, 4) for s in step_times]
    result["mean_step_s"] = round(sum(measured) / len(measured), 4)
    result["denoise_peak_gib"] = peak_gib(device)

    peak_reset(device)
    frames, seconds = timed(device, lambda: engine._decode(latents))
    result["decode_s"] = round(seconds, 3)
    result["decode_peak_gib"] = peak_gib(device)
    if args.decode_variants and path != "stock":
        result["decode_variants"] = decode_variants(engine, latents, frames)
    result["end_to_end_50_steps_s"] = round(
        result["encode_s"] + FULL_STEPS * result["mean_step_s"] + result["decode_s"], 1
    )

    text_tokens = (
        int(conditions.prompt_attention_mask.sum())
        if path != "stock"
        else int(conditions.prompt_attention_mask.shape[1])
    )
    config = pipe.transformer.config
    flops = step_flops(config, args.frames, args.height, args.width, text_tokens)
    result["flop_per_step"] = flops.as_dict()
    result["achieved_tflops"] = round(flops.total / result["mean_step_s"] / 1e12, 2)

    # One transformer call on fixed inputs, to compare the paths' outputs.
    with torch.inference_mode():
        if path != "stock":
            from framecast.engines.hunyuan.speedups import trim_padding

            conditions, engine._attention.unpadded = trim_padding(conditions)  # type: ignore[union-attr]
        out = pipe.transformer(
            hidden_states=probe["latents"].to(device, pipe.transformer.dtype),
            timestep=torch.tensor([900.0], device=device),
            guidance=torch.tensor([6000.0], device=device, dtype=pipe.transformer.dtype),
            encoder_hidden_states=conditions.prompt_embeds.to(pipe.transformer.dtype),
            encoder_attention_mask=conditions.prompt_attention_mask,
            pooled_projections=conditions.pooled_prompt_embeds.to(pipe.transformer.dtype),
            return_dict=False,
        )[0].float()
    for reference_path in ("stock", "exact"):
        if reference_path in probe and path != reference_path:
            reference = probe[reference_path]
            error = float((out - reference).norm() / reference.norm())
            result[f"rel_error_vs_{reference_path}"] = error
    if path in ("stock", "exact"):
        probe[path] = out
    return result


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
                "decode_s": round(seconds, 3),
                "peak_gib": peak_gib(device),
                "max_level_diff": int(diff.max()),
                "mean_level_diff": round(float(diff.mean()), 4),
            }
        }
    finally:
        vae.to(memory_format=torch.contiguous_format)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["full", "tiny"], default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--frames", type=int, default=129)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="measured steps after warm-up")
    parser.add_argument(
        "--paths",
        default="stock,exact",
        help="stock, exact, exact-compiled, fast (FP8 linears, converted in place: last)",
    )
    parser.add_argument(
        "--attention",
        default="auto",
        choices=list(ATTENTION_BACKENDS),
        help="FRAMECAST_ATTENTION of the non-stock paths",
    )
    parser.add_argument(
        "--decode-variants", action="store_true", help="also time the VAE decode channels-last"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    paths = args.paths.split(",")
    if "fast" in paths[:-1]:
        parser.error("fast converts the model in place, so it must be the last path")

    device = torch.device(args.device)
    report: dict[str, Any] = {
        "environment": environment(device),
        "args": vars(args) | {"out": None},
    }
    pipe, placement = build(args.model, device)
    dtype = placement.transformer_dtype
    n = 8192 if device.type == "cuda" else 512
    report["matmul_tflops"] = round(matmul_rate(device, dtype, n) / 1e12, 2)
    heads, dim = (
        pipe.transformer.config.num_attention_heads,
        pipe.transformer.config.attention_head_dim,
    )
    tokens = (
        step_flops(pipe.transformer.config, args.frames, args.height, args.width, 0).video_tokens
        + 400
    )
    report["attention_tflops"] = attention_rates(device, dtype, tokens, heads, dim)
    latent_shape = (
        1,
        pipe.transformer.config.in_channels,
        (args.frames - 1) // 4 + 1,
        args.height // 8,
        args.width // 8,
    )
    probe = {"latents": torch.randn(latent_shape, generator=torch.Generator().manual_seed(0))}
    report["paths"] = [measure(p, pipe, placement, args, probe) for p in paths]
    out = args.out or Path(__file__).parent / "results" / (
        f"gpu_hunyuan-{args.model}-{device.type}-{dt.date.today().isoformat()}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
