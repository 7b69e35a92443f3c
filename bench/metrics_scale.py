"""What a ``GET /metrics`` scrape costs as the requests table's history grows.

    .venv/bin/python bench/metrics_scale.py                          # SQLite, 200 and 200,000
    .venv/bin/python bench/metrics_scale.py --database postgresql    # FRAMECAST_TEST_DATABASE_URL
    .venv/bin/python bench/metrics_scale.py --pythonpath /root/before/src --label before

For each size it writes that many requests straight into a new database at revision 0006 (the
schema both the code before the totals and after share), in bulk through framecast's own table
(``framecast.db.requests``): a fixed 10 queued and 2 running, the rest finished over the last
30 days (90 % completed with a peak GPU memory, 7 % failed, 3 % cancelled), on two models, all
owned by the benchmark's API key. It then starts the real server on it (``framecast serve``,
loopback only, no workers; ``--pythonpath`` runs another source tree's server), which
migrates it to its own newest revision (the totals' migration counts the history once: its
time is ``server_start_s``), and measures:

1. ``sequential``: N scrapes one after the other, with FRAMECAST_METRICS_CACHE_SECONDS=0 (every
   scrape reads the database): latency and the server's CPU seconds per scrape.
2. ``concurrent_uncached``: S scrapers for D seconds, each scraping once per ``--interval``
   (as a Prometheus job: never two of its own at once; an interval that passes while its last
   scrape is unanswered is counted as missed), cache off, while a client lists the key's newest
   requests (``GET /v1/requests?limit=20``) every 0.25 s: scrapes per second, their latency,
   the listing's latency, the server's CPU share and the machine's load average.
3. ``concurrent_cached``: the same with the default cache (a new server on the same database).

The code before the totals ignores FRAMECAST_METRICS_CACHE_SECONDS: its phases 2 and 3 are the
same server. Every scrape is checked: the finished requests it reports must add up to the
number written. Each phase is bounded (``--duration``, ``--timeout`` per call).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from api_load import (
    API_KEY,
    RESULTS_DIR,
    Server,
    latency_summary,
    machine,
    running_server,
    write_result,
)
from framecast.db import create_db_engine, migrate, requests
from framecast.engines.base import PEAK_GPU_MEMORY_KEY

MODELS = ("tencent/hunyuan/image-to-video", "tencent/hunyuan-video-v1.5/image-to-video")
OWNER = "env_" + hashlib.sha256(API_KEY.encode()).hexdigest()[:16]
"""The owner id framecast gives FRAMECAST_API_KEYS' key (framecast.admission.keys)."""
QUEUED, RUNNING = 10, 2
BATCH = 10_000
GIB = 1024**3
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# --- the database ------------------------------------------------------------------------------


def rows(count: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    """``count`` requests in batches: the first 12 unfinished, the rest finished."""
    rng = random.Random(seed)
    # From the start of the day: runs on one day (before, after) write the very same rows.
    now = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    batch: list[dict[str, Any]] = []
    for i in range(count):
        created = now - dt.timedelta(seconds=rng.uniform(60, 30 * 86400))
        started = created + dt.timedelta(seconds=rng.uniform(0.5, 900))
        finished = started + dt.timedelta(seconds=rng.uniform(3, 3600))
        row: dict[str, Any] = {
            "id": f"bench-{seed}-{i:07d}",
            "owner": OWNER,
            "model": MODELS[i % 2],
            "input": {"prompt": "a slow push in", "resolution": "720p", "num_frames": 129},
            "image_key": f"inputs/bench-{i}/image.png",
            "created_at": created,
            "updated_at": created,
            "attempts": 1,
            "status": "completed",
            "started_at": started,
            "finished_at": finished,
            # Every row names every column: an executemany takes its columns from the first.
            "error_code": None,
            "error_message": None,
            "result": None,
        }
        roll = rng.random()
        if i < QUEUED:
            row.update(status="in_queue", attempts=0, started_at=None, finished_at=None)
        elif i < QUEUED + RUNNING:
            row.update(status="in_progress", finished_at=None)
        elif roll < 0.07:
            row.update(status="failed", error_code=rng.choice(["engine_error", "worker_lost"]))
            row["error_message"] = "bench"
        elif roll < 0.10:
            row.update(status="cancelled", started_at=None)
        else:
            row["result"] = {
                "video_key": f"outputs/bench-{i}/video.mp4",
                "poster_key": f"outputs/bench-{i}/poster.jpg",
                "metadata": {"engine": "hunyuan", PEAK_GPU_MEMORY_KEY: rng.uniform(20, 70) * GIB},
            }
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@contextmanager
def database(kind: str, pg_url: str, folder: Path) -> Iterator[str]:
    """A new, empty database's URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'framecast.db'}"
        return
    schema = f"fc_bench_{secrets.token_hex(6)}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def fill(url: str, count: int, seed: int) -> dict[str, Any]:
    engine = create_db_engine(url)
    try:
        migrate(engine, "0006")
        started = time.perf_counter()
        for batch in rows(count, seed):
            with engine.begin() as conn:
                conn.execute(insert(requests), batch)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:  # what autovacuum would do after such a load
                conn.execute(text("ANALYZE"))
        return {"requests": count, "fill_s": round(time.perf_counter() - started, 2)}
    finally:
        engine.dispose()


# --- the scrapes -------------------------------------------------------------------------------


def finished_total(body: str) -> int:
    return int(
        sum(
            s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
            if s.name == "framecast_requests_finished_total"
        )
    )


def history_figures(body: str) -> dict[str, int]:
    """The totals a scrape reports, to compare the code before and after on the same data."""
    wanted = {
        "framecast_requests_finished_total": "finished",
        "framecast_request_wait_seconds_count": "wait_count",
        "framecast_request_run_seconds_count": "run_count",
        "framecast_request_peak_gpu_memory_bytes_count": "peak_gpu_memory_count",
        "framecast_queue_depth": "queued",
        "framecast_requests_running": "running",
    }
    out = dict.fromkeys(wanted.values(), 0)
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name in wanted:
                out[wanted[s.name]] += int(s.value)
    return out


def history_samples(body: str) -> dict[str, int]:
    """Every count the history makes (finished totals, histogram buckets and counts), by name
    and labels: equal before and after means the totals' migration counted exactly."""
    return {
        s.name + json.dumps(s.labels, sort_keys=True): int(s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "framecast_requests_finished_total" or s.name.endswith(("_bucket", "_count"))
    }


class Checked:
    """Every scrape must report the history that was written."""

    def __init__(self, finished: int) -> None:
        self.finished = finished
        self.wrong = 0

    def check(self, body: str) -> None:
        if finished_total(body) != self.finished:
            self.wrong += 1


def sequential(server: Server, scrapes: int, timeout: float, checked: Checked) -> dict[str, Any]:
    seconds = []
    with httpx.Client(base_url=server.base_url, timeout=timeout) as client:
        for _ in range(2):  # warm-up: first-request costs, connections
            client.get("/metrics").raise_for_status()
        cpu = server.cpu_seconds()
        for _ in range(scrapes):
            started = time.perf_counter()
            r = client.get("/metrics")
            seconds.append(time.perf_counter() - started)
            r.raise_for_status()
            checked.check(r.text)
        cpu = server.cpu_seconds() - cpu
    return {
        "scrapes": scrapes,
        "latency": latency_summary(seconds),
        "server_cpu_ms_per_scrape": round(cpu / scrapes * 1000, 2),
        "body_bytes": len(r.content),
    }


async def _concurrent(
    server: Server,
    scrapers: int,
    interval: float,
    duration: float,
    timeout: float,
    checked: Checked,
) -> dict[str, Any]:
    scrape_s: list[float] = []
    listing_s: list[float] = []
    missed = [0]  # intervals that passed with the scraper's last scrape unanswered
    errors: dict[str, int] = {}
    stop = time.monotonic() + duration
    limits = httpx.Limits(max_connections=scrapers + 1)
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=timeout, limits=limits
    ) as client:

        async def scraper(offset: float) -> None:
            # As a Prometheus job: one scrape per interval, none while the last is unanswered.
            due = time.monotonic() + offset
            while due < stop:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                started = time.perf_counter()
                try:
                    r = await client.get("/metrics")
                    r.raise_for_status()
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                else:
                    scrape_s.append(time.perf_counter() - started)
                    checked.check(r.text)
                due += interval
                while due < time.monotonic():
                    missed[0] += 1
                    due += interval

        async def lister() -> None:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    r = await client.get("/v1/requests?limit=20", headers=headers)
                    r.raise_for_status()
                except httpx.HTTPError as exc:
                    key = f"listing {type(exc).__name__}"
                    errors[key] = errors.get(key, 0) + 1
                else:
                    listing_s.append(time.perf_counter() - started)
                await asyncio.sleep(0.25)

        cpu = server.cpu_seconds()
        wall = time.perf_counter()
        offsets = [interval * i / scrapers for i in range(scrapers)]  # spread over the interval
        await asyncio.gather(lister(), *(scraper(o) for o in offsets))
        wall = time.perf_counter() - wall
        cpu = server.cpu_seconds() - cpu
    return {
        "scrapers": scrapers,
        "interval_s": interval,
        "seconds": round(wall, 2),
        "scrapes": len(scrape_s),
        "offered_per_s": round(scrapers / interval, 1),
        "missed_intervals": missed[0],
        "scrapes_per_s": round(len(scrape_s) / wall, 1),
        "scrape_latency": latency_summary(scrape_s),
        "listing_latency": latency_summary(listing_s),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_share": round(cpu / wall, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "errors": errors,
    }


def concurrent(server: Server, args: argparse.Namespace, checked: Checked) -> dict[str, Any]:
    return asyncio.run(
        _concurrent(server, args.scrapers, args.interval, args.duration, args.timeout, checked)
    )


@contextmanager
def server_on(url: str, args: argparse.Namespace, env: Mapping[str, str]) -> Iterator[Server]:
    extra = {
        "FRAMECAST_DATABASE_URL": url,
        "FRAMECAST_WEBHOOK_DISPATCHER": "false",
        **({"PYTHONPATH": args.pythonpath} if args.pythonpath else {}),
        **env,
    }
    with running_server(workers=0, startup_timeout=args.timeout, extra_env=extra) as server:
        yield server


def one_size(count: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    with database(args.database, args.pg_url, folder) as url:
        run: dict[str, Any] = {"load_average_1m_before": round(os.getloadavg()[0], 2)}
        run |= fill(url, count, args.seed)
        finished = count - QUEUED - RUNNING
        print(f"{count:>9,} requests written in {run['fill_s']} s", flush=True)
        checked = Checked(finished)
        started = time.perf_counter()
        with server_on(url, args, {"FRAMECAST_METRICS_CACHE_SECONDS": "0"}) as server:
            run["server_start_s"] = round(time.perf_counter() - started, 2)
            with httpx.Client(base_url=server.base_url, timeout=args.timeout) as client:
                body = client.get("/metrics").text
            run["figures"] = history_figures(body)
            run["history_samples"] = history_samples(body)
            run["sequential"] = sequential(server, args.scrapes, args.timeout, checked)
            run["concurrent_uncached"] = concurrent(server, args, checked)
        with server_on(url, args, {}) as server:
            run["concurrent_cached"] = concurrent(server, args, checked)
        run["scrapes_with_wrong_totals"] = checked.wrong
    seq, unc, cac = run["sequential"], run["concurrent_uncached"], run["concurrent_cached"]
    print(
        f"{count:>9,}: start {run['server_start_s']} s; one scrape p50 "
        f"{seq['latency']['p50_ms']} ms ({seq['server_cpu_ms_per_scrape']} ms CPU); "
        f"{args.scrapers} scrapers uncached {unc['scrapes_per_s']}/s p50 "
        f"{unc['scrape_latency'].get('p50_ms')} ms, CPU {unc['server_cpu_share']}, listing p50 "
        f"{unc['listing_latency'].get('p50_ms')} ms max {unc['listing_latency'].get('max_ms')} ms; "
        f"cached {cac['scrapes_per_s']}/s p50 {cac['scrape_latency'].get('p50_ms')} ms, CPU "
        f"{cac['server_cpu_share']}, listing "
        f"p50 {cac['listing_latency'].get('p50_ms')} ms; wrong totals: {checked.wrong}",
        flush=True,
    )
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 200_000])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("FRAMECAST_TEST_DATABASE_URL", DEFAULT_PG_URL),
        help="PostgreSQL server (a schema is made and dropped in it)",
    )
    parser.add_argument("--scrapes", "-n", type=int, default=20, help="sequential scrapes")
    parser.add_argument("--scrapers", "-s", type=int, default=16, help="concurrent scrapers")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between one scraper's scrapes"
    )
    parser.add_argument("--duration", "-d", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call or start")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pythonpath", help="run the server from another source tree")
    parser.add_argument("--label", default="after", help="names the run in its file")
    parser.add_argument("--json", type=Path, help="default: bench/results/metrics_scale-...")
    args = parser.parse_args(argv)
    now = dt.datetime.now(dt.UTC)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; {args.database}", flush=True)
    runs = []
    for count in args.sizes:
        with tempfile.TemporaryDirectory(prefix="framecast-metrics-") as folder:
            runs.append(one_size(count, args, Path(folder)))
    result = {
        "benchmark": "metrics_scale",
        "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "label": args.label,
        "database": args.database,
        "machine": info,
        "pythonpath": args.pythonpath,
        "params": {
            "scrapes": args.scrapes,
            "scrapers": args.scrapers,
            "interval_s": args.interval,
            "duration_s": args.duration,
            "queued": QUEUED,
            "running": RUNNING,
        },
        "runs": runs,
    }
    stamp = now.strftime("%Y-%m-%d")
    out = args.json or RESULTS_DIR / f"metrics_scale-{stamp}-{args.database}-{args.label}.json"
    write_result(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
