"""Webhook delivery: latency from a status change to the receiver, and deliveries per second.

    .venv/bin/python bench/webhooks_bench.py                   # SQLite and PostgreSQL
    .venv/bin/python bench/webhooks_bench.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test

The dispatcher runs in its own process, as ``framecast webhooks dispatch`` does (and as the
dispatcher thread of ``framecast serve`` does beside the API), with the shipped defaults unless
told otherwise; the receiver is an HTTP server in this process that checks every signature with
the ``standardwebhooks`` package and answers 204.

1. Latency: requests with a webhook are submitted, claimed and completed one at a time through
   the real JobStore (the outbox row commits with the completion); latency is from just before
   the completing transaction to the receiver having checked the delivery (this machine's
   ``time.time`` on both sides). The next completion waits for the delivery plus a random
   20-80 ms, so the dispatcher is idle when it comes.
2. Throughput: N completed requests' deliveries wait in the outbox, then one dispatcher process
   (or ``--dispatchers`` of them) starts and sends them all: deliveries per second, from its
   start to the receiver having the last one (start-up included, about a quarter second).

Each backend gets a fresh database (SQLite file, or a new PostgreSQL schema).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import tempfile
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from standardwebhooks import Webhook

from framecast.admission.keys import KeyStore
from framecast.db import create_db_engine, migrate
from framecast.queue.results import VideoResult
from framecast.settings import Settings
from framecast.webhooks.job_stores import build_job_store
from framecast.webhooks.outbox import WebhookTarget, register
from queue_bench import fresh_pg  # bench/ is on the path: scripts run from it

MODEL = "tencent/hunyuan/image-to-video"
DONE = VideoResult(
    video_key="outputs/bench/video.mp4", poster_key="outputs/bench/poster.jpg", metadata={}
)


class Receiver:
    def __init__(self, secret: str) -> None:
        self.arrived: dict[str, float] = {}  # request_id -> when its delivery was checked
        self.duplicates = 0
        self.cond = threading.Condition()
        verifier = Webhook(secret)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = verifier.verify(body, dict(self.headers.items()))
                with receiver.cond:
                    if payload["request_id"] in receiver.arrived:
                        receiver.duplicates += 1
                    receiver.arrived[payload["request_id"]] = time.time()
                    receiver.cond.notify_all()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def wait(self, count: int, timeout: float = 120) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.arrived) >= count, timeout):
                raise TimeoutError(f"{len(self.arrived)} of {count} deliveries arrived")


def _dispatch(settings: Settings) -> None:
    import signal

    from framecast.webhooks.dispatcher import run_dispatcher

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_dispatcher(settings, stop, migrated=True)


class Bench:
    def __init__(self, url: str, data_dir: Path, poll: float | None) -> None:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "database_url": url,
            "allow_private_urls": True,
        }
        if poll is not None:
            values["webhook_poll_seconds"] = poll
        self.settings = Settings(**values)
        self.db = create_db_engine(url)
        migrate(self.db)
        self.jobs = build_job_store(self.db, self.settings)
        new = KeyStore(self.db).create("bench")
        self.owner = new.record.id
        self.receiver = Receiver(new.webhook_secret)
        self.target = WebhookTarget(self.receiver.url, False, "http://bench.test")

    def submit_and_claim(self) -> Any:
        job = self.jobs.submit(
            owner=self.owner,
            model=MODEL,
            input={},
            image_key="inputs/x",
            also=partial(register, target=self.target),
        )
        lease = self.jobs.claim("bench", models=[MODEL])
        assert lease is not None and lease.request_id == job.id
        return lease

    def start_dispatchers(self, n: int) -> list[mp.Process]:
        procs = [mp.Process(target=_dispatch, args=(self.settings,)) for _ in range(n)]
        for p in procs:
            p.start()
        return procs

    def latency(self, n: int) -> dict[str, Any]:
        (proc,) = self.start_dispatchers(1)
        warm = self.submit_and_claim()  # the dispatcher's first connection is not measured
        self.jobs.complete(warm, DONE)
        self.receiver.wait(1)
        samples = []
        for i in range(n):
            lease = self.submit_and_claim()
            time.sleep(random.uniform(0.02, 0.08))
            changed = time.time()
            assert self.jobs.complete(lease, DONE)
            self.receiver.wait(i + 2)
            samples.append((self.receiver.arrived[lease.request_id] - changed) * 1000)
        proc.terminate()
        proc.join(30)
        samples.sort()
        return {
            "deliveries": n,
            "poll_seconds": self.settings.webhook_poll_seconds,
            "p50_ms": round(statistics.median(samples), 1),
            "p99_ms": round(samples[int(0.99 * (n - 1))], 1),
            "max_ms": round(samples[-1], 1),
            "duplicates": self.receiver.duplicates,
        }

    def throughput(self, n: int, dispatchers: int) -> dict[str, Any]:
        for _ in range(n):
            assert self.jobs.complete(self.submit_and_claim(), DONE)
        started = time.time()
        procs = self.start_dispatchers(dispatchers)
        self.receiver.wait(n)
        elapsed = time.time() - started
        for p in procs:
            p.terminate()
            p.join(30)
        return {
            "deliveries": n,
            "dispatchers": dispatchers,
            "concurrency_each": self.settings.webhook_concurrency,
            "deliveries_per_s": round(n / elapsed, 1),
            "duplicates": self.receiver.duplicates,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--latency-deliveries", type=int, default=200)
    parser.add_argument("--throughput-deliveries", type=int, default=2000)
    parser.add_argument("--dispatchers", type=int, default=1)
    parser.add_argument("--poll", type=float, help="FRAMECAST_WEBHOOK_POLL_SECONDS")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "out"}}
    schemas: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("sqlite", "postgresql"):
            for part in ("latency", "throughput"):
                if label == "sqlite":
                    url = f"sqlite:///{tmp}/{part}.db"
                else:
                    url, schema = fresh_pg(args.pg)
                    schemas.append(schema)
                bench = Bench(url, Path(tmp) / f"{label}-{part}", args.poll)
                if part == "latency":
                    result = bench.latency(args.latency_deliveries)
                else:
                    result = bench.throughput(args.throughput_deliveries, args.dispatchers)
                report[f"{part}_{label}"] = result
                print(part, label, result, flush=True)
                bench.receiver.httpd.shutdown()
                bench.db.dispose()
    with create_engine(args.pg).begin() as conn:
        for schema in schemas:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    out = (
        args.out or Path(__file__).parent / "results" / f"webhooks-{time.strftime('%Y-%m-%d')}.json"
    )
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
