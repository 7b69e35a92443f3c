"""Slow request bodies against the in-flight body budget (issue 21): can a keyed submit get in?

    .venv/bin/python bench/slow_bodies.py                         # both scenarios
    .venv/bin/python bench/slow_bodies.py --scenario unauthenticated
    .venv/bin/python bench/slow_bodies.py --pythonpath /root/before/src   # another source tree

For each scenario it starts the real server (``python -m framecast serve``, as
bench/hostile_images.py does) on a free loopback port with a temporary data dir and
``FRAMECAST_WORKERS=0`` (the API alone), default settings but the keys. Then:

1. three connections each send a submit's headers declaring 79,691,776 (the body cap, 76 MiB),
   79,691,776 and 41,943,040 bytes (together 192 MiB, the whole default
   FRAMECAST_MAX_INFLIGHT_BODY_BYTES) and then one byte of body every ``--interval`` seconds
   (2), until the server answers or closes, or ``--hold`` seconds (40) have passed;
2. ``--lead`` seconds (1) after they started, a keyed submit of a 300-byte body (a small PNG as a
   data: URI) is sent and timed, as a client sees it (status, code, seconds);
3. once every slow connection has its answer (or the hold is over), ``/metrics`` is read for
   ``framecast_slow_bodies_total`` (absent where the server has no such counter).

Scenarios:

- ``unauthenticated``: the issue's. The slow connections send no key.
- ``one-key``: the slow connections send a valid key (the attacker's), and the timed submit
  another one: what one key's slow bodies do to the other keys.

Everything stays on loopback. Results go to bench/results/slow_bodies-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from api_load import (
    API_KEY,
    RESULTS_DIR,
    add_server_settings,
    machine,
    running_server,
    write_result,
)

MODEL_PATH = "/v1/models/tencent/hunyuan/image-to-video"
ATTACKER_KEY = "bench-attacker-key-0123456789"
DECLARED = (79_691_776, 79_691_776, 41_943_040)
"""The issue's three declared sizes: the body cap twice, then the rest of the 192 MiB budget."""
SUBMIT_BYTES = 300
SCENARIOS = {
    "unauthenticated": "three slow bodies with no key; the submit with a key",
    "one-key": "three slow bodies with one key; the submit with another key",
}


def small_submit(size: int = SUBMIT_BYTES) -> bytes:
    """A valid submit body of exactly ``size`` bytes: an 8x8 PNG as a data: URI, the prompt
    padded to fit."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 40)).save(buffer, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    bare = json.dumps({"prompt": "", "image_url": uri}).encode()
    if len(bare) > size:
        raise ValueError(f"the smallest submit is {len(bare)} bytes, over {size}")
    body = json.dumps({"prompt": "p" * (size - len(bare)), "image_url": uri}).encode()
    assert len(body) == size
    return body


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """An HTTP answer's head and its Content-Length of body (b"": closed without one)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    try:
        return head + await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        return head + exc.partial


def parse_answer(data: bytes) -> dict[str, Any]:
    """Status and error code of an HTTP answer (b"": closed, no answer)."""
    if not data:
        return {"status": "closed"}
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    status: int | str = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else status_line
    code = None
    with contextlib.suppress(ValueError, AttributeError):  # not JSON: no code
        code = json.loads(body).get("error", {}).get("code")
    closes = b"connection: close" in head.lower()
    return {"status": status, "code": code, "connection_close": closes}


async def slow_body(
    base_url: str, declared: int, key: str | None, interval: float, stop_at: float
) -> dict[str, Any]:
    """One slow connection: headers declaring ``declared`` bytes, then a byte every
    ``interval`` seconds until the server answers or closes, or ``stop_at`` (monotonic)."""
    host, _, port = base_url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    writer.write(
        (
            f"POST {MODEL_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n{auth}\r\n"
        ).encode()
    )
    started = time.monotonic()
    answer = asyncio.ensure_future(read_answer(reader))
    sent = 0
    outcome: dict[str, Any]
    try:
        await writer.drain()
        while not answer.done() and time.monotonic() < stop_at:
            await asyncio.wait(
                {answer}, timeout=min(interval, max(0.0, stop_at - time.monotonic()))
            )
            if answer.done() or time.monotonic() >= stop_at:
                break
            writer.write(b"{" if sent == 0 else b" ")
            await writer.drain()
            sent += 1
        if answer.done():
            try:
                outcome = parse_answer(answer.result())
            except ConnectionError as exc:
                outcome = {"status": type(exc).__name__}
        else:
            outcome = {"status": "no answer (still open at the end of the hold)"}
    except ConnectionError as exc:
        outcome = {"status": type(exc).__name__}
    finally:
        answer.cancel()
        writer.close()
    return {
        "declared_bytes": declared,
        "key": key is not None,
        **outcome,
        "seconds": round(time.monotonic() - started, 3),
        "body_bytes_sent": sent,
    }


async def timed_submit(base_url: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url, timeout=90) as client:
        try:
            r = await client.post(MODEL_PATH, content=small_submit(), headers=headers)
        except httpx.HTTPError as exc:
            return {"status": type(exc).__name__, "seconds": time.perf_counter() - started}
    code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
    return {
        "status": r.status_code,
        "code": code,
        "seconds": round(time.perf_counter() - started, 3),
        "retry_after": r.headers.get("retry-after"),
    }


def slow_body_counts(text: str) -> dict[str, float] | None:
    counts = {}
    for line in text.splitlines():
        if line.startswith("framecast_slow_bodies_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('"')[1]] = float(value)
    return counts or None


async def attack(base_url: str, scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    key = ATTACKER_KEY if scenario == "one-key" else None
    begun = time.monotonic()
    stop_at = begun + args.hold
    slow = [
        asyncio.create_task(slow_body(base_url, size, key, args.interval, stop_at))
        for size in DECLARED
    ]
    await asyncio.sleep(args.lead)
    submit = await timed_submit(base_url)
    submitted_at = round(time.monotonic() - begun, 3)
    bodies = await asyncio.gather(*slow)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        counted = slow_body_counts((await client.get("/metrics")).text)
    return {
        "submit": submit,
        "submit_answered_at_seconds": submitted_at,
        "slow_bodies": bodies,
        "framecast_slow_bodies_total": counted,
    }


def run_scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    extra = {
        "FRAMECAST_API_KEYS": f"{API_KEY},{ATTACKER_KEY}",
        **dict(args.env),
        **({"PYTHONPATH": args.pythonpath} if args.pythonpath else {}),
    }
    with running_server(workers=0, extra_env=extra) as server:
        result = asyncio.run(attack(server.base_url, name, args))
    return {"scenario": name, "what": SCENARIOS[name], **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between body bytes")
    parser.add_argument("--lead", type=float, default=1.0, help="seconds before the submit")
    parser.add_argument("--hold", type=float, default=40.0, help="longest the attack lasts")
    add_server_settings(parser, "FRAMECAST_BODY_MIN_BYTES_PER_SECOND=1")
    parser.add_argument("--json", type=Path, help="default: bench/results/slow_bodies-<date>")
    args = parser.parse_args(argv)
    now = dt.datetime.now(dt.UTC)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB")
    runs = []
    for name in args.scenario or list(SCENARIOS):
        run = run_scenario(name, args)
        runs.append(run)
        sub = run["submit"]
        bodies = ", ".join(
            f"{b['status']}{' ' + b['code'] if b.get('code') else ''} at {b['seconds']:.1f} s"
            for b in run["slow_bodies"]
        )
        print(
            f"{name:<16} submit: {sub['status']} {sub.get('code') or ''} in "
            f"{sub['seconds']:.3f} s; slow bodies: {bodies}; "
            f"framecast_slow_bodies_total: {run['framecast_slow_bodies_total']}"
        )
    result = {
        "benchmark": "slow_bodies",
        "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "machine": info,
        "settings": dict(args.env),
        "pythonpath": args.pythonpath,
        "declared_bytes": list(DECLARED),
        "interval_seconds": args.interval,
        "lead_seconds": args.lead,
        "hold_seconds": args.hold,
        "runs": runs,
    }
    out = args.json or RESULTS_DIR / f"slow_bodies-{now.strftime('%Y-%m-%dT%H%M%SZ')}.json"
    write_result(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
