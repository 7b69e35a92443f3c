"""Time the preview engine end to end: render a camera move and encode it to H.264 MP4.

    .venv/bin/python bench/preview_render.py                      # 1280x720, 129 frames, medium
    .venv/bin/python bench/preview_render.py --preset medium fast faster veryfast --json out.json

The input is a synthetic, deterministic "photo": sky, sun glow, layered hills, a few shapes,
and multi-scale texture plus fine grain, because x264's speed depends a lot on content (a
clean gradient encodes several times faster than anything resembling a photo).

For each preset it reports the end-to-end time (what a preview job costs), and once, for
context, rendering alone and encoding alone of pre-rendered frames: end to end is less than
their sum because the engine renders on a background thread while the encoder works.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFilter

from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.preview import PreviewEngine, camera_move_for
from framecast.models.hunyuan_i2v import FPS
from framecast.video import X264_PRESETS, encode_mp4


def photo_like_image(width: int = 2400, height: int = 1600, seed: int = 0) -> Image.Image:
    """A deterministic landscape-ish image with the detail and grain of a real photo.

    3:2 like a camera photo, so the engine's cover crop is exercised too.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height

    # Sky: deep blue at the top to a warm haze at the horizon, with a soft sun glow.
    sky_top, sky_low = np.array([40, 90, 170], np.float32), np.array([235, 200, 160], np.float32)
    rgb = sky_top + (sky_low - sky_top) * (v[..., None] / 0.6).clip(0, 1) ** 0.8
    glow = np.exp(-(((u - 0.7) * 1.5) ** 2 + ((v - 0.35) * 2.2) ** 2) * 18)
    rgb += glow[..., None] * np.array([60, 45, 10], np.float32)

    # Hills: three ridges, each a sum of random sines, nearer ones darker and greener.
    for layer, (base, colour) in enumerate(
        [(0.55, (110, 120, 140)), (0.65, (70, 100, 70)), (0.78, (45, 75, 35))]
    ):
        freqs = rng.uniform(2, 12, 4)
        phases = rng.uniform(0, 2 * np.pi, 4)
        amps = rng.uniform(0.01, 0.04, 4) * (1 + layer * 0.5)
        ridge = base + sum(
            a * np.sin(2 * np.pi * f * u[0] + p)
            for f, a, p in zip(freqs, amps, phases, strict=True)
        )
        below = v >= ridge[None, :]
        shade = 1.0 - 0.35 * (v - ridge[None, :]).clip(0, 0.3) / 0.3
        rgb = np.where(below[..., None], np.array(colour, np.float32) * shade[..., None], rgb)

    image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))

    # Shapes: a few houses and trees with hard edges, the kind of detail x264 must keep.
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        cx, cy = rng.uniform(0.05, 0.95) * width, rng.uniform(0.7, 0.95) * height
        s = rng.uniform(0.02, 0.05) * width
        if rng.random() < 0.5:
            wall = tuple(int(c) for c in rng.integers(150, 240, 3))
            draw.rectangle((cx - s, cy - s * 0.7, cx + s, cy + s * 0.5), fill=wall)
            draw.polygon(
                [(cx - s * 1.2, cy - s * 0.7), (cx + s * 1.2, cy - s * 0.7), (cx, cy - s * 1.5)],
                fill=(150, 50, 40),
            )
            draw.rectangle(
                (cx - s * 0.2, cy - s * 0.1, cx + s * 0.2, cy + s * 0.5), fill=(60, 40, 30)
            )
        else:
            draw.rectangle(
                (cx - s * 0.08, cy - s * 0.2, cx + s * 0.08, cy + s * 0.6), fill=(70, 50, 30)
            )
            draw.ellipse(
                (cx - s * 0.6, cy - s * 1.6, cx + s * 0.6, cy),
                fill=(30, int(rng.integers(70, 110)), 30),
            )
    image = image.filter(ImageFilter.GaussianBlur(0.8))

    # Texture at several scales (foliage, clouds) plus per-pixel grain like a camera sensor's.
    texture = np.zeros((height, width), np.float32)
    for cell, amp in ((64, 6.0), (16, 5.0), (4, 4.0)):
        small = rng.normal(0, 1, (height // cell + 1, width // cell + 1)).astype(np.float32)
        up = Image.fromarray(small, mode="F").resize((width, height), Image.Resampling.BICUBIC)
        texture += amp * np.asarray(up)
    grain = rng.normal(0, 2.0, (height, width, 3)).astype(np.float32)
    out = np.asarray(image, np.float32) + texture[..., None] + grain
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": usable,
        "python": platform.python_version(),
        "av": av.__version__,
        "libavcodec": ".".join(str(n) for n in av.library_versions["libavcodec"]),
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--frames", type=int, default=129)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--preset",
        nargs="+",
        default=["medium"],
        choices=X264_PRESETS,
        help="one or more libx264 presets to compare",
    )
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument(
        "--prompt",
        default="slow push in on the village",
        help="camera words pick the move (default push-in)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    args = parser.parse_args(argv)

    image = photo_like_image()
    request = GenerationRequest(
        image=image,
        prompt=args.prompt,
        seed=args.seed,
        width=args.width,
        height=args.height,
        num_frames=args.frames,
        fps=FPS,
    )
    engine = PreviewEngine()
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores; python {info['python']}, av {info['av']} "
        f"(libavcodec {info['libavcodec']}), pillow {info['pillow']}, numpy {info['numpy']}"
    )
    print(
        f"job: {args.width}x{args.height}, {args.frames} frames, crf {args.crf}, "
        f"move {camera_move_for(args.prompt)}, input {image.width}x{image.height}"
    )

    results: dict[str, Any] = {
        "machine": info,
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.mp4"

        # Warm-up: first-call costs (imports, x264 init tables) are not what a worker pays.
        encode = partial(
            encode_mp4, path=out, width=args.width, height=args.height, fps=FPS, crf=args.crf
        )
        encode(engine.generate(request, NullHooks()), preset="ultrafast")

        render_times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            frames = list(engine.generate(request, NullHooks()))
            render_times.append(time.perf_counter() - start)
        results["render_only_s"] = summary(render_times)
        med, best = statistics.median(render_times), min(render_times)
        per_frame = 1000 * best / args.frames
        print(f"render only: median {med:.2f} s, min {best:.2f} s ({per_frame:.1f} ms/frame)")

        results["presets"] = {}
        for preset in args.preset:
            encode_times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                encode(frames, preset=preset)
                encode_times.append(time.perf_counter() - start)
            total_times = []
            size = 0
            for _ in range(args.repeat):
                start = time.perf_counter()
                video = encode(engine.generate(request, NullHooks()), preset=preset)
                total_times.append(time.perf_counter() - start)
                size = video.size_bytes
            results["presets"][preset] = {
                "end_to_end_s": summary(total_times),
                "encode_only_s": summary(encode_times),
                "size_bytes": size,
                "bitrate_kbps": round(size * 8 / video.duration_s / 1000),
            }
            med, best = statistics.median(total_times), min(total_times)
            enc = statistics.median(encode_times)
            kbps = results["presets"][preset]["bitrate_kbps"]
            print(
                f"{preset:>9}: end to end median {med:.2f} s, min {best:.2f} s | "
                f"encode only median {enc:.2f} s | {size / 1e6:.2f} MB ({kbps} kb/s)"
            )

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def summary(times: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(times), 3),
        "min": round(min(times), 3),
        "max": round(max(times), 3),
    }


if __name__ == "__main__":
    sys.exit(main())
