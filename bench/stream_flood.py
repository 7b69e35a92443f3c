"""What open status streams cost everyone else: ``/healthz`` latency while S streams are open.

    .venv/bin/python bench/stream_flood.py                                # after, SQLite
    .venv/bin/python bench/stream_flood.py --pythonpath /root/before/src --label before
    .venv/bin/python bench/stream_flood.py --database postgresql          # FRAMECAST_TEST_DATABASE_URL

For each ``--keys`` count K it starts the real server (``framecast serve`` on a loopback port,
no workers, the default FRAMECAST_POLL_SECONDS of 0.5 s and the default stream caps;
``--pythonpath`` runs another source tree's server) with K API keys, submits ``--requests``
requests spread over the keys (nothing runs them: they stay queued, so their streams stay
open), and then:

1. ``idle``: GET /healthz at ``--rate`` per second for ``--duration`` s (open loop: latency
   from each call's scheduled time, so a stalled server cannot hide), nothing else open.
2. opens ``--streams`` GET .../status/stream connections, key i % K, each on one of its key's
   requests in turn, and keeps every one that answers 200 open, reading what it sends; counts
   those answered 429 (past the caps) and anything else.
3. ``flood``: /healthz again as in 1 while they are open, and the server's CPU share.

One key (K=1) is the issue's case: 500 streams from one key (the code before the caps opens
them all; after, 16 open and the rest are refused). Many keys (K=32) opens ~500 within the
per-key cap after too, so the cost of 500 open streams is measured on both. Bounded: each phase
lasts ``--duration`` s, opening the streams at most ``--open-timeout`` s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api_load import (
    MODEL_PATH,
    RESULTS_DIR,
    RawClient,
    Server,
    latency_summary,
    machine,
    png_data_uri,
    running_server,
)

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def database(kind: str, pg_url: str) -> Iterator[dict[str, str]]:
    """The server's database settings: its own SQLite file, or a fresh PostgreSQL schema
    dropped afterwards."""
    if kind == "sqlite":
        yield {}
        return
    schema = f"fc_bench_{secrets.token_hex(6)}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield {"FRAMECAST_DATABASE_URL": url.render_as_string(hide_password=False)}
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def submit_all(base_url: str, keys: list[str], total: int) -> dict[str, list[str]]:
    """``total`` queued requests, spread evenly over ``keys`` (at least one each)."""
    image = png_data_uri(32)
    per_key = max(1, total // len(keys))
    made: dict[str, list[str]] = {}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for key in keys:
            headers = {"Authorization": f"Bearer {key}"}
            for i in range(per_key):
                body = {"prompt": f"flood {i}", "image_url": image, "resolution": "360p"}
                r = client.post(MODEL_PATH, json=body, headers=headers)
                r.raise_for_status()
                made.setdefault(key, []).append(r.json()["request_id"])
    return made


async def healthz(base_url: str, rate: float, duration: float) -> dict[str, Any]:
    """GET /healthz on schedule at ``rate``/s for ``duration`` s; latency from the schedule."""
    client = RawClient(base_url, {}, connections=32)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        try:
            status, _ = await asyncio.wait_for(client.get("/healthz"), 30)
        except Exception as exc:
            errors[type(exc).__name__] += 1
            return
        if status != 200:
            errors[f"http_{status}"] += 1
            return
        latencies.append(time.perf_counter() - scheduled)

    start = time.perf_counter() + 0.1
    for i in range(int(rate * duration)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=35)
    await client.aclose()
    return {"rate_rps": rate, "duration_s": duration, **latency_summary(latencies)} | {
        "errors": dict(errors)
    }


@dataclass
class Stream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    events: int = 0
    ended: bool = False
    task: asyncio.Task[None] | None = None

    async def drain(self) -> None:
        try:
            while line := await self.reader.readline():
                if line.startswith(b"event: status"):
                    self.events += 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        self.ended = True


@dataclass
class Opened:
    streams: list[Stream] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


async def open_streams(
    base_url: str, plan: list[tuple[str, str]], concurrency: int, timeout: float
) -> Opened:
    """One connection per (key, request id) of ``plan``; 200s kept open and read from."""
    host, _, port = base_url.removeprefix("http://").partition(":")
    out = Opened()
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str, request_id: str) -> None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(
                    f"GET /v1/requests/{request_id}/status/stream HTTP/1.1\r\n"
                    f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
                    "Accept: text/event-stream\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError) as exc:
                out.answers[type(exc).__name__] += 1
                return
            status = int(head.split(b" ", 2)[1])
            out.answers[str(status)] += 1
            if status != 200:
                writer.close()
                return
            stream = Stream(reader, writer)
            stream.task = asyncio.create_task(stream.drain())
            out.streams.append(stream)

    started = time.perf_counter()
    jobs = [asyncio.create_task(one(key, rid)) for key, rid in plan]
    _, late = await asyncio.wait(jobs, timeout=timeout)
    for job in late:
        job.cancel()
    out.answers["not_answered_in_time"] += len(late)
    out.seconds = time.perf_counter() - started
    return out


async def flood(server: Server, made: dict[str, list[str]], args: argparse.Namespace) -> Any:
    keys = list(made)
    plan = []
    for i in range(args.streams):
        key = keys[i % len(keys)]
        plan.append((key, made[key][(i // len(keys)) % len(made[key])]))
    idle = await healthz(server.base_url, args.rate, args.duration)
    opened = await open_streams(server.base_url, plan, args.open_concurrency, args.open_timeout)
    await asyncio.sleep(args.settle)  # past the first reads of every stream
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    during = await healthz(server.base_url, args.rate, args.duration)
    cpu = (server.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
    still_open = sum(not s.ended for s in opened.streams)
    events = sum(s.events for s in opened.streams)
    for stream in opened.streams:
        stream.writer.close()
        if stream.task is not None:
            stream.task.cancel()
    return {
        "streams_asked": args.streams,
        "answers": dict(opened.answers),
        "open_seconds": round(opened.seconds, 2),
        "open_at_end": still_open,
        "status_events_received": events,
        "healthz_idle": idle,
        "healthz_with_streams": during,
        "server_cpu_share_with_streams": round(cpu, 3),
    }


def run(args: argparse.Namespace, key_count: int, db_env: dict[str, str]) -> dict[str, Any]:
    keys = [f"flood-key-{i:03d}-{secrets.token_hex(4)}" for i in range(key_count)]
    env = {
        "FRAMECAST_API_KEYS": ",".join(keys),
        **db_env,
        **({"PYTHONPATH": args.pythonpath} if args.pythonpath else {}),
    }
    with running_server(workers=0, extra_env=env) as server:
        made = submit_all(server.base_url, keys, args.requests)
        result: dict[str, Any] = asyncio.run(flood(server, made, args))
    result["keys"] = key_count
    result["requests_followed"] = sum(len(ids) for ids in made.values())
    return result


def show(label: str, run: dict[str, Any]) -> None:
    idle, busy = run["healthz_idle"], run["healthz_with_streams"]
    print(
        f"{label}: {run['keys']} key(s), {run['streams_asked']} streams asked -> "
        f"{run['answers']}, {run['open_at_end']} open at the end; /healthz p50/p99 "
        f"{idle.get('p50_ms')}/{idle.get('p99_ms')} ms idle, "
        f"{busy.get('p50_ms')}/{busy.get('p99_ms')} ms with them open "
        f"(errors {busy['errors']}); server CPU {100 * run['server_cpu_share_with_streams']:.0f}%"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--keys", default="1,32", help="comma-separated key counts, one run each")
    parser.add_argument("--requests", type=int, default=64, help="queued requests, all keys")
    parser.add_argument("--rate", type=float, default=50.0, help="/healthz calls per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds between opening and measuring"
    )
    parser.add_argument("--open-concurrency", type=int, default=64)
    parser.add_argument("--open-timeout", type=float, default=60.0)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=None, help="default FRAMECAST_TEST_DATABASE_URL")
    parser.add_argument("--pythonpath", help="run the server from another source tree")
    parser.add_argument("--label", default="after")
    parser.add_argument("--json", type=Path, help="default bench/results/stream_flood-...json")
    args = parser.parse_args(argv)
    pg_url = args.pg_url or os.environ.get("FRAMECAST_TEST_DATABASE_URL") or PG_DEFAULT
    now = dt.datetime.now(dt.UTC)
    runs = []
    for count in (int(k) for k in args.keys.split(",")):
        with database(args.database, pg_url) as db_env:
            result = run(args, count, db_env)
        show(f"{args.label}/{args.database}", result)
        runs.append(result)
    out = args.json or RESULTS_DIR / (
        f"stream_flood-{now:%Y-%m-%d}-{args.database}-{args.label}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result_doc = {
        "benchmark": "stream_flood",
        "date": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "params": params,
        "runs": runs,
    }
    out.write_text(json.dumps(result_doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
