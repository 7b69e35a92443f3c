"""The API's memory and responsiveness under hostile images: the worst images the caps admit.

    .venv/bin/python bench/hostile_images.py                     # every scenario, 8 at once
    .venv/bin/python bench/hostile_images.py --scenario webp-max --concurrent 8
    .venv/bin/python bench/hostile_images.py --pythonpath /tmp/old/src   # another source tree

For each scenario it starts the real server (``python -m framecast serve``, as
tests/acceptance/conftest.py does) on a free loopback port with a temporary data dir and
``FRAMECAST_WORKERS=0``: only the API runs, so the API process is the server process. It then

1. submits one small image (first-request costs) and reads the API's resident memory: the
   baseline;
2. sends N submits of the scenario's image (a data: URI) at once, while another client calls
   ``GET /healthz`` every 50 ms and times each answer, from a process of its own (``--probe
   same-process`` times it from the load generator's event loop, which also waits on sending
   the bodies);
3. reads the API's peak resident memory from the kernel (``VmHWM``, exact), waits
   ``--settle`` seconds, and reads its resident memory again (``VmRSS``).

Scenarios (each image is made here, small on the wire, as large as the caps allow decoded):

- ``png16-6300``: the issue's image, 6300x6300 16-bit RGBA PNG (309 KB, 39.7 MP, 318 MB
  decoded): over FRAMECAST_MAX_DECODE_BYTES, so refused from its header.
- ``png-40mp``: 7300x5479 8-bit RGB PNG, 40.0 MP (the pixel cap), 120 MB by the decode-cost
  rule; Pillow holds RGB at 4 bytes per pixel, 160 MB.
- ``webp-max``: the largest WebP the decode cap admits (8 bytes per pixel: 4096x4096, 134 MB);
  Pillow decodes WebP through libwebp's two RGBA canvases and two more copies.
- ``data-uri-50mb``: a 50 MB noise PNG (the download cap) as a 67 MB base64 data: URI.

Results go to bench/results/hostile_images-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import io
import json
import multiprocessing
import os
import struct
import sys
import time
import zlib
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from api_load import (
    API_KEY,
    RESULTS_DIR,
    add_server_settings,
    latency_summary,
    machine,
    running_server,
    write_result,
)

MODEL_PATH = "/v1/models/tencent/hunyuan/image-to-video"
ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024

TARGET_PEAK_MIB = 1024.0
TARGET_HEALTHZ_MS = 100.0


# --- images ------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def flat_png(width: int, height: int, bit_depth: int, color_type: int, channels: int) -> bytes:
    """A complete PNG of zeros, compressed row by row: tiny on the wire, huge decoded."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + width * channels * bit_depth // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise_png(target_bytes: int) -> bytes:
    side = int((target_bytes / 3) ** 0.5)
    return encoded(Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)), "PNG")


SCENARIOS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "png16-6300": ("6300x6300 16-bit RGBA PNG", lambda: flat_png(6300, 6300, 16, 6, 4)),
    "png-40mp": ("7300x5479 8-bit RGB PNG", lambda: flat_png(7300, 5479, 8, 2, 3)),
    "webp-max": (
        "4096x4096 WebP (lossless)",
        lambda: encoded(Image.new("RGB", (4096, 4096), (10, 20, 30)), "WEBP", lossless=True),
    ),
    "data-uri-50mb": ("50 MB noise PNG", lambda: noise_png(50 * 1000 * 1000)),
}


def data_uri(data: bytes) -> str:
    kind = "webp" if data[8:12] == b"WEBP" else "png"
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


# --- the server --------------------------------------------------------------------------------


def memory_kib(pid: int, field: str) -> int:
    """A field of /proc/PID/status in KiB: VmRSS (resident now) or VmHWM (peak, exact)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


# --- one scenario ------------------------------------------------------------------------------


async def submit_all(base_url: str, body: bytes, n: int) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:

        async def one() -> dict[str, Any]:
            started = time.perf_counter()
            try:
                r = await client.post(MODEL_PATH, content=body, headers=headers)
            except httpx.HTTPError as exc:
                return {"status": type(exc).__name__, "seconds": time.perf_counter() - started}
            code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
            return {"status": r.status_code, "code": code, "seconds": time.perf_counter() - started}

        return list(await asyncio.gather(*(one() for _ in range(n))))


async def watch_healthz(base_url: str, stop: asyncio.Event) -> list[float]:
    seconds: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            r = await client.get("/healthz")
            if r.status_code == 200:
                seconds.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
    return seconds


def probe_healthz(base_url: str, stop: EventType, out: Queue[list[float]]) -> None:
    """``watch_healthz`` in a process of its own: what a load balancer's health check sees,
    without the wait for this process's own event loop, which is busy sending the bodies."""
    seconds: list[float] = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            r = client.get("/healthz")
            if r.status_code == 200:
                seconds.append(time.perf_counter() - started)
            time.sleep(0.05)
    out.put(seconds)


async def load(
    base_url: str, body: bytes, n: int, probe: str
) -> tuple[list[dict[str, Any]], list[float]]:
    if probe == "same-process":
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_healthz(base_url, stop))
        await asyncio.sleep(0.3)  # some answers before the load
        try:
            submits = await submit_all(base_url, body, n)
        finally:
            await asyncio.sleep(0.2)
            stop.set()
        return submits, await watcher
    context = multiprocessing.get_context("spawn")
    stopped, results = context.Event(), context.Queue()
    prober = context.Process(target=probe_healthz, args=(base_url, stopped, results))
    prober.start()
    await asyncio.sleep(1.0)  # the interpreter's start, then some answers before the load
    try:
        submits = await submit_all(base_url, body, n)
    finally:
        await asyncio.sleep(0.2)
        stopped.set()
    seconds = await asyncio.to_thread(results.get, timeout=60)
    prober.join(timeout=10)
    return submits, seconds


def run_scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    label, make = SCENARIOS[name]
    image = make()
    body = json.dumps({"prompt": "hostile", "image_url": data_uri(image)}).encode()
    warm = json.dumps({"prompt": "warm", "image_url": data_uri(flat_png(64, 36, 8, 2, 3))})
    extra = {**dict(args.env), **({"PYTHONPATH": args.pythonpath} if args.pythonpath else {})}
    with running_server(workers=0, extra_env=extra) as server:
        r = httpx.post(
            server.base_url + MODEL_PATH,
            content=warm,
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
            timeout=30,
        )
        r.raise_for_status()
        time.sleep(0.5)
        baseline = memory_kib(server.pid, "VmRSS")
        started = time.perf_counter()
        submits, healthz = asyncio.run(load(server.base_url, body, args.concurrent, args.probe))
        wall = time.perf_counter() - started
        peak = memory_kib(server.pid, "VmHWM")
        time.sleep(args.settle)
        after = memory_kib(server.pid, "VmRSS")
    statuses: dict[str, int] = {}
    for s in submits:
        key = f"{s['status']} {s['code']}" if s.get("code") else str(s["status"])
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "scenario": name,
        "image": label,
        "image_bytes": len(image),
        "body_bytes": len(body),
        "concurrent_submits": args.concurrent,
        "answers": statuses,
        "submit_seconds": latency_summary([s["seconds"] for s in submits]),
        "wall_seconds": round(wall, 2),
        "api_rss_mib": {
            "baseline": round(baseline / 1024, 1),
            "peak": round(peak / 1024, 1),
            f"after_{args.settle:g}s": round(after / 1024, 1),
        },
        "healthz_probe": args.probe,
        "healthz_during": latency_summary(healthz),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--concurrent", "-n", type=int, default=8, help="submits at once")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before the last read")
    add_server_settings(parser, "FRAMECAST_DECODE_CONCURRENCY=1")
    parser.add_argument(
        "--probe",
        choices=["own-process", "same-process"],
        default="own-process",
        help="where /healthz is timed from: a process of its own (default), or the load "
        "generator's event loop (the figures taken before this option was added were taken this way)",
    )
    parser.add_argument("--json", type=Path, help="default: bench/results/hostile_images-<date>")
    args = parser.parse_args(argv)
    now = dt.datetime.now(dt.UTC)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB")
    runs = []
    for name in args.scenario or list(SCENARIOS):
        run = run_scenario(name, args)
        runs.append(run)
        rss, hz = run["api_rss_mib"], run["healthz_during"]
        print(
            f"{name:<14} {run['answers']}  API RSS MiB: baseline {rss['baseline']}, peak "
            f"{rss['peak']}, after {rss[f'after_{args.settle:g}s']}; /healthz ms: p50 "
            f"{hz.get('p50_ms')}, max {hz.get('max_ms')} ({hz.get('count')} calls); submits "
            f"max {run['submit_seconds'].get('max_ms')} ms"
        )
    result = {
        "benchmark": "hostile_images",
        "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "machine": info,
        "settings": dict(args.env),
        "pythonpath": args.pythonpath,
        "target": {"api_peak_mib": TARGET_PEAK_MIB, "healthz_max_ms": TARGET_HEALTHZ_MS},
        "runs": runs,
    }
    out = args.json or RESULTS_DIR / f"hostile_images-{now.strftime('%Y-%m-%dT%H%M%SZ')}.json"
    write_result(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
