"""HunyuanVideo 1.5 speed and memory at 480p and 720p: the exact path first, then diffusers' stock.

On a GPU it builds the full-size 8.3B transformer with seeded random weights
(framecast/engines/hunyuan15/fullsize.py; speed does not depend on their values) and nothing
else: the text and image encoders' outputs are random embeddings of the shapes the pipeline
hands the transformer, with the valid lengths of a real request:

- Qwen2.5-VL: 1000 positions (the pipeline pads the prompt to 1000 past the system turn), the
  first ``--qwen-tokens`` (256) valid: a detailed prompt, as the official prompt rewriter writes;
- ByT5: 256 positions, ``--byt5-tokens`` (0) valid: a prompt without quoted text, for which the
  pipeline passes zeros and an all-false mask;
- SigLIP: 729 image tokens, all valid.

The 480p and 720p checkpoints' transformers differ only in ``target_size``, a config value the
forward never reads, so one build serves both sizes. Runs (``--runs``), in order, by default
``exact-480p,exact-720p,stock-480p,stock-720p`` (16:9, 848x480 and 1280x720, 121 frames):
``exact`` has :class:`~framecast.engines.hunyuan15.exact.ExactAttention` installed (text
padding cut, attention unmasked), ``stock`` diffusers' own processors, which build a
[B,1,S,S] boolean mask per attention call (12 GiB at 720p, plus its bf16 copy in SDPA: stock
720p is expected to run out of memory on an 80 GB card; the error is recorded as a finding).
Per run:

- the tokens (video from the latent grid, text as the path passes it) and the FLOP of one
  forward (projections and MLPs of the 54 dual-stream blocks, and attention);
- one forward on fixed inputs under the profiler: ``first_forward_s`` (the warm-up), the SDPA
  kernels it ran with their call counts (``attention_kernels``: the 54 blocks' calls and the
  token refiner's), whether the exact path ran unmasked (``unpadded``), whether the output is
  finite, and its relative L2 error against every earlier run's at the same size;
- one timed forward: ``forward_s``, ``step_s`` (two forwards: the base checkpoints' CFG makes a
  conditional and an unconditional pass a step; a CFG-distilled checkpoint's step is one),
  ``peak_gib`` (``torch.cuda.max_memory_allocated``, reset before it), the FLOP/s.

The JSON (``--out``, a file or a folder) is rewritten after every measurement, as
``bench/gpu_hunyuan.py``'s is (``gpu_common.Report``); progress lines are flushed.
``bench/gpu_check.sh`` runs it after the HunyuanVideo-I2V parts; on the CPU with the tiny model
(``--model tiny --device cpu``, 64x48 and 96x64 pixels, 5 frames) it checks the harness, and its
timings mean nothing.

    python3 -u bench/gpu_hunyuan15.py --out "$OUT/hunyuan15.json"
    python bench/gpu_hunyuan15.py --model tiny --device cpu
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import torch
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15AttnProcessor2_0,
    HunyuanVideo15Transformer3DModel,
)
from torch.profiler import ProfilerActivity, profile

from framecast.engines.hunyuan.flops import StepFlops
from framecast.engines.hunyuan.speedups import ATTENTION_BACKENDS
from framecast.engines.hunyuan15.exact import ExactAttention
from framecast.models.hunyuan15_i2v import DEFAULT_FRAMES
from framecast.models.hunyuan15_i2v import SIZES as MODEL_SIZES
from gpu_common import (  # a sibling module: bench/ is on the path of a script run from it
    error_text,
    kernel_calls,
    log,
    peak_gib,
    peak_reset,
    sdpa_calls,
    sig,
    start_report,
    timed,
)

RUNS: Final = ("exact-480p", "exact-720p", "stock-480p", "stock-720p")
SIZES: Final = {
    "full": {r: MODEL_SIZES[("16:9", r)] for r in ("480p", "720p")},  # 848x480, 1280x720
    "tiny": {"480p": (64, 48), "720p": (96, 64)},
}
FRAMES: Final = {"full": DEFAULT_FRAMES, "tiny": 5}  # 121 for the full model
SPATIAL, TEMPORAL = 16, 4
"""The 1.5 VAE's compression (the tiny one's too); the transformer's patch is 1x1x1."""
QWEN_LENGTH: Final = 1000
BYT5_LENGTH: Final = 256
IMAGE_TOKENS: Final = 729
PASSES_PER_STEP: Final = 2
"""Transformer passes per denoising step of the base checkpoints (CFG, guidance 6)."""
TIMESTEP: Final = 900.0


@dataclass(frozen=True)
class Run:
    path: str  # "exact" or "stock"
    resolution: str
    width: int
    height: int
    frames: int

    @property
    def name(self) -> str:
        return f"{self.path}-{self.resolution}"

    @property
    def grid(self) -> tuple[int, int, int]:
        """Latent frames, height, width: one token each."""
        return (self.frames - 1) // TEMPORAL + 1, self.height // SPATIAL, self.width // SPATIAL

    @property
    def video_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w


def forward_flops(config: Any, video: int, text: int) -> StepFlops:
    """FLOP of one transformer pass, counted as ``framecast.engines.hunyuan.flops`` counts
    HunyuanVideo-I2V's: per token and dual-stream block, q, k, v and out (4 d^2) and the 4x MLP
    (8 d^2), each stream with its own weights; attention 4 N^2 d over all N tokens. The
    embedders, the token refiner and the final layer are left out (well under 1%)."""
    d = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    per_token = 2 * (4 + 2 * float(config["mlp_ratio"])) * d * d  # 2 FLOP a multiply-add
    blocks = int(config["num_layers"])
    n = video + text
    return StepFlops(video, text, per_token * n * blocks, 4.0 * n * n * d * blocks)


def build(model: str, device: torch.device, seed: int) -> HunyuanVideo15Transformer3DModel:
    if model == "tiny":  # float32, as the tiny pipeline builds it
        from framecast.engines.hunyuan15.tiny import build_tiny_pipeline

        transformer: HunyuanVideo15Transformer3DModel = build_tiny_pipeline(seed).transformer
        module: torch.nn.Module = transformer  # diffusers' .to has a signature mypy misreads
        module.to(device)
        return transformer
    from framecast.engines.hunyuan15.fullsize import build_full_size_transformer

    return build_full_size_transformer(device, "480p", seed)


def inputs(
    transformer: HunyuanVideo15Transformer3DModel,
    run: Run,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:
    """The transformer's keyword inputs at ``run``'s size, as the pipeline passes them (the
    image latent and mask channels inside ``hidden_states``), random, the same in every run of
    a size (drawn on the CPU from ``--seed``)."""
    config: Any = transformer.config  # a FrozenDict with attribute access
    dtype = transformer.dtype
    generator = torch.Generator().manual_seed(args.seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device, dtype)

    qwen_mask = torch.zeros(1, QWEN_LENGTH, dtype=torch.int64)
    qwen_mask[:, : args.qwen_tokens] = 1
    byt5_mask = torch.zeros(1, BYT5_LENGTH, dtype=torch.int64)
    byt5_mask[:, : args.byt5_tokens] = 1
    byt5 = randn(1, BYT5_LENGTH, config.text_embed_2_dim) * byt5_mask[..., None].to(device, dtype)
    return {
        "hidden_states": randn(1, config.in_channels, *run.grid),
        "timestep": torch.tensor([TIMESTEP]).to(device, dtype),
        "encoder_hidden_states": randn(1, QWEN_LENGTH, config.text_embed_dim),
        "encoder_attention_mask": qwen_mask.to(device),
        "encoder_hidden_states_2": byt5,
        "encoder_attention_mask_2": byt5_mask.to(device),
        "image_embeds": randn(1, IMAGE_TOKENS, config.image_embed_dim),
    }


@contextlib.contextmanager
def attention_path(
    transformer: HunyuanVideo15Transformer3DModel, path: str, attention: str
) -> Iterator[ExactAttention | None]:
    """The exact path installed for the length of a run (and diffusers' processors back after
    it); the stock path is the transformer as built."""
    if path == "stock":
        yield None
        return
    exact = ExactAttention(transformer, attention)
    try:
        yield exact
    finally:
        exact._hook.remove()
        for block in transformer.transformer_blocks:
            attn: Any = block.attn
            attn.set_processor(HunyuanVideo15AttnProcessor2_0())  # type: ignore[no-untyped-call]


def forward(transformer: HunyuanVideo15Transformer3DModel, kwargs: dict[str, Any]) -> torch.Tensor:
    with torch.inference_mode():
        out: torch.Tensor = transformer(**kwargs, return_dict=False)[0]
    return out


def measure(
    run: Run,
    transformer: HunyuanVideo15Transformer3DModel,
    args: argparse.Namespace,
    device: torch.device,
    outputs: dict[str, dict[str, torch.Tensor]],
    record: dict[str, Any],
    save: Callable[[], None],
) -> None:
    """One run into ``record``, saved after each forward."""
    kwargs = inputs(transformer, run, args, device)
    valid_text = args.qwen_tokens + args.byt5_tokens + IMAGE_TOKENS
    text = valid_text if run.path == "exact" else QWEN_LENGTH + BYT5_LENGTH + IMAGE_TOKENS
    flops = forward_flops(transformer.config, run.video_tokens, text)
    record["size"] = {"width": run.width, "height": run.height, "frames": run.frames}
    record["tokens"] = {"video": run.video_tokens, "text": text, "total": run.video_tokens + text}
    record["flop_per_forward"] = flops.as_dict()
    save()
    with attention_path(transformer, run.path, args.attention) as exact:
        peak_reset(device)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out, seconds = timed(device, lambda: forward(transformer, kwargs))
        record["first_forward_s"] = sig(seconds)
        record["first_forward_peak_gib"] = peak_gib(device)
        kernels = kernel_calls(prof)
        record["attention_kernels"] = kernels
        record["attention_ops"] = sdpa_calls(prof)
        # The blocks' kernel: theirs are most of the calls (54 against the token refiner's 2;
        # the tiny model has one of each, on the same kernel on the CPU).
        record["attention_kernel"] = max(kernels, key=kernels.__getitem__) if kernels else None
        if exact is not None:
            record["attention"] = exact.attention
            record["unpadded"] = exact.processor.unpadded
        result = out.float().cpu()
        del out
        record["finite"] = bool(torch.isfinite(result).all())
        same_size = outputs.setdefault(run.resolution, {})
        for earlier, reference in same_size.items():
            error = (result - reference).norm() / reference.norm()
            record[f"rel_error_vs_{earlier}"] = float(error)
        same_size[run.name] = result
        save()
        log(f"{run.name}: first forward {seconds:.3f} s, attention {kernels}")

        peak_reset(device)
        _, seconds = timed(device, lambda: forward(transformer, kwargs))
        record["forward_s"] = sig(seconds)
        record["step_s"] = sig(PASSES_PER_STEP * seconds)
        record["peak_gib"] = peak_gib(device)
        record["achieved_tflops"] = sig(flops.total / seconds / 1e12)
        save()
        log(f"{run.name}: forward {seconds:.3f} s, peak {record['peak_gib']} GiB")


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures to read first."""
    return {
        "forward_s": {r["run"]: r.get("forward_s") for r in records},
        "step_s": {r["run"]: r.get("step_s") for r in records},
        "peak_gib": {r["run"]: r.get("peak_gib") for r in records},
        "attention_kernel": {r["run"]: r.get("attention_kernel") for r in records},
        "unpadded": {r["run"]: r["unpadded"] for r in records if "unpadded" in r},
        "rel_error": {
            f"{r['run']} vs {key.removeprefix('rel_error_vs_')}": value
            for r in records
            for key, value in r.items()
            if key.startswith("rel_error_vs_")
        },
        "failed": {r["run"]: r["error"] for r in records if "error" in r},
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", choices=["full", "tiny"], default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--runs",
        default=",".join(RUNS),
        help=f"comma-separated, in order, of {', '.join(RUNS)}",
    )
    parser.add_argument("--frames", type=int, help="default: 121 (full), 5 (tiny)")
    parser.add_argument("--qwen-tokens", type=int, default=256, help=f"valid of {QWEN_LENGTH}")
    parser.add_argument("--byt5-tokens", type=int, default=0, help=f"valid of {BYT5_LENGTH}")
    parser.add_argument(
        "--attention",
        default="auto",
        choices=list(ATTENTION_BACKENDS),
        help="FRAMECAST_ATTENTION of the exact runs",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the weights and the inputs")
    parser.add_argument("--out", help="the JSON file, or a folder for it (default: bench/results/)")
    args = parser.parse_args()
    args.runs = args.runs.split(",")
    unknown = [r for r in args.runs if r not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")
    args.frames = args.frames or FRAMES[args.model]
    if args.frames < 1 or (args.frames - 1) % TEMPORAL:
        parser.error("--frames must be 4n+1")
    if not 0 <= args.qwen_tokens <= QWEN_LENGTH or not 0 <= args.byt5_tokens <= BYT5_LENGTH:
        parser.error(f"valid tokens: Qwen 0 to {QWEN_LENGTH}, ByT5 0 to {BYT5_LENGTH}")
    return args


def main() -> int:
    args = parse_args()
    device = torch.device(args.device)
    report = start_report(args, "gpu_hunyuan15", device)
    data = report.data

    transformer, seconds = timed(device, lambda: build(args.model, device, args.seed))
    data["build_s"] = sig(seconds)
    data["transformer_parameters"] = sum(p.numel() for p in transformer.parameters())
    data["dtype"] = str(transformer.dtype).removeprefix("torch.")
    if device.type == "cuda":
        data["gpu_free_gib_after_build"] = round(torch.cuda.mem_get_info(device)[0] / 2**30, 2)
    report.save()
    log(f"built the {args.model} transformer in {seconds:.1f} s")

    outputs: dict[str, dict[str, torch.Tensor]] = {}
    data["runs"] = []
    for name in args.runs:
        path, resolution = name.split("-")
        width, height = SIZES[args.model][resolution]
        run = Run(path, resolution, width, height, args.frames)
        record: dict[str, Any] = {"run": name}
        data["runs"].append(record)
        try:
            measure(run, transformer, args, device, outputs, record, report.save)
        except Exception as exc:  # out of memory, above all: the next runs still run
            traceback.print_exc()
            record["error"] = error_text(exc)
            record["out_of_memory"] = isinstance(exc, torch.OutOfMemoryError)
            record["peak_gib_at_failure"] = peak_gib(device)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        data["summary"] = summary(data["runs"])
        report.save()
        log(f"{name}: done")

    data["complete"] = True
    report.save()
    print(json.dumps(data["summary"], indent=2), flush=True)
    log(f"wrote {report.path}")
    # Stock running out of memory is a finding, not a failure of the check.
    failed = [r for r in data["runs"] if "error" in r]
    return 1 if any(r["run"].startswith("exact") or not r["out_of_memory"] for r in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
