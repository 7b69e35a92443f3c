"""The queue alone: submit-to-claim latency with an idle worker, and claim throughput.

    .venv/bin/python bench/queue_bench.py                                    # SQLite and PostgreSQL
    .venv/bin/python bench/queue_bench.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test

1. Latency: one idle worker process waits the way ``framecast worker`` does (LISTEN/NOTIFY on
   PostgreSQL, or polling every ``--poll`` seconds) and claims as soon as it wakes. The main
   process submits N requests one at a time, each after the previous was claimed plus a
   random pause; latency is from the submit's commit to the claim's commit (both clocks are
   this machine's ``time.time``). PostgreSQL is measured with NOTIFY and with polling only.
2. Throughput: N requests queued, then W worker processes claim and complete them with a
   no-op engine as fast as they can: requests per second through the queue.

Each backend gets a fresh database (SQLite file, or a new PostgreSQL schema).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from framecast.db import create_db_engine, migrate
from framecast.queue.jobs import JobStore
from framecast.queue.results import VideoResult
from framecast.queue.wakeup import PollingWaiter, waiter_for

MODEL = "tencent/hunyuan/image-to-video"


DONE = VideoResult(
    video_key="outputs/bench/video.mp4", poster_key="outputs/bench/poster.jpg", metadata={}
)
"""What every benchmark request completes with (no files: only the queue is measured)."""


def _store(url: str) -> JobStore:
    return JobStore(create_db_engine(url), lease_seconds=60, max_attempts=3)


def _latency_worker(url: str, poll: float, listen: bool, n: int, out: Any) -> None:
    store = _store(url)
    stop = threading.Event()
    waiter = waiter_for(url, stop) if listen else PollingWaiter(stop)
    waiter.wait(0.01)  # connect and LISTEN before the first submit
    out.put("ready")
    claimed = 0
    while claimed < n:
        lease = store.claim("bench", models=[MODEL])
        if lease is None:
            waiter.wait(poll)
            continue
        out.put((lease.request_id, time.time()))
        store.complete(lease, DONE)
        claimed += 1
    waiter.close()


def latency(url: str, n: int, poll: float, listen: bool) -> dict[str, Any]:
    store = _store(url)
    out: Any = mp.Queue()
    proc = mp.Process(target=_latency_worker, args=(url, poll, listen, n, out))
    proc.start()
    assert out.get(timeout=30) == "ready"
    samples = []
    for i in range(n):
        time.sleep(random.uniform(0.02, 0.08))
        submitted = time.time()
        job = store.submit(owner="o", model=MODEL, input={"i": i}, image_key="inputs/x")
        rid, claimed_at = out.get(timeout=30)
        assert rid == job.id
        samples.append((claimed_at - submitted) * 1000)
    proc.join(30)
    samples.sort()
    return {
        "requests": n,
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[int(0.99 * (n - 1))], 2),
        "max_ms": round(samples[-1], 2),
    }


def _throughput_worker(url: str, out: Any) -> None:
    store = _store(url)
    done = 0
    while (lease := store.claim(f"bench-{mp.current_process().pid}", models=[MODEL])) is not None:
        store.complete(lease, DONE)
        done += 1
    out.put(done)


def throughput(url: str, n: int, workers: int) -> dict[str, Any]:
    store = _store(url)
    for i in range(n):
        store.submit(owner="o", model=MODEL, input={"i": i}, image_key="inputs/x")
    out: Any = mp.Queue()
    procs = [mp.Process(target=_throughput_worker, args=(url, out)) for _ in range(workers)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    counts = [out.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    assert sum(counts) == n, counts
    return {
        "requests": n,
        "workers": workers,
        "per_worker": counts,
        "requests_per_s": round(n / elapsed, 1),
    }


def fresh_pg(pg: str) -> tuple[str, str]:
    schema = f"fc_bench_{secrets.token_hex(4)}"
    with create_engine(pg).begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(pg).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--throughput-requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--poll", type=float, default=0.5, help="FRAMECAST_POLL_SECONDS")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "out"}}
    schemas = []
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, str, bool]] = [("sqlite", f"sqlite:///{tmp}/lat.db", False)]
        for label, listen in (("postgresql_notify", True), ("postgresql_polling", False)):
            url, schema = fresh_pg(args.pg)
            schemas.append(schema)
            runs.append((label, url, listen))
        for label, url, listen in runs:
            migrate(create_db_engine(url))
            report[f"latency_{label}"] = latency(url, args.latency_requests, args.poll, listen)
            print(label, report[f"latency_{label}"], flush=True)
        throughput_url, throughput_schema = fresh_pg(args.pg)
        schemas.append(throughput_schema)
        for label, url in (
            ("sqlite", f"sqlite:///{tmp}/tp.db"),
            ("postgresql", throughput_url),
        ):
            migrate(create_db_engine(url))
            report[f"throughput_{label}"] = throughput(url, args.throughput_requests, args.workers)
            print(label, report[f"throughput_{label}"], flush=True)
    with create_engine(args.pg).begin() as conn:
        for schema in schemas:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    out = args.out or Path(__file__).parent / "results" / f"queue-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
