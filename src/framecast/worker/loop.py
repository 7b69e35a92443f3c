"""A worker process: claim a request under a lease, run the engine, encode, store, finish.

The final status is written in one place (:meth:`Worker._finish`) from a ``finally`` block, so
no exit path leaves a request claimed and silent: it is completed, failed, cancelled or given
back. Should the process die anyway, its lease runs out and another worker requeues the request.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from framecast.admission.idempotency import IdempotencyStore
from framecast.contract.errors import ErrorCode
from framecast.db import create_db_engine, migrate
from framecast.engines import Engine
from framecast.engines.base import Cancelled
from framecast.errors import FramecastError
from framecast.images import decode_image
from framecast.logs import request_context
from framecast.models import get_model
from framecast.queue import outcomes
from framecast.queue.jobs import JobStore, Lease, StepAck
from framecast.queue.outcomes import Outcome
from framecast.queue.registry import WorkerRegistry, WorkerState
from framecast.queue.results import VideoResult
from framecast.queue.retention import sweep, sweep_deleted, sweep_orphan_inputs
from framecast.queue.wakeup import waiter_for
from framecast.settings import Settings
from framecast.startup import check_data_dir
from framecast.storage import open_storage
from framecast.video import encode_mp4
from framecast.webhooks.job_stores import build_job_store
from framecast.worker.engine_loading import EngineLoadFailed, Plan, load_with_retries, try_plan
from framecast.worker.scratch import Scratch, clear_stale

log = logging.getLogger("framecast.worker.loop")

PROGRESS_INTERVAL_S = 0.2
"""Progress is written at most this often (and at the last step): the preview engine makes a
step per frame, far faster than anyone polls."""


PHASE_SPANS: dict[str, tuple[float, float]] = {
    "encoding": (0.0, 0.02),
    "denoising": (0.02, 0.95),
    # A request with a super-resolution stage (HunyuanVideo 1.5): its base pass, then the SR
    # steps, each given about half the time (6 steps at 720p cost about 12 at 480p).
    "denoising_base": (0.02, 0.5),
    "super_resolution": (0.5, 0.95),
    "decoding": (0.95, 1.0),
}
"""The share of a request's time each model phase takes (denoising dominates: 50 steps of
~15-30 s against seconds for the text encoders and about a minute of VAE decode), so the
reported progress only ever goes up. Phases not listed span the whole request."""


def overall_progress(phase: str, step: int, total: int) -> float:
    start, end = PHASE_SPANS.get(phase, (0.0, 1.0))
    fraction = min(1.0, max(0.0, step / total)) if total > 0 else 0.0
    return start + (end - start) * fraction


@dataclass
class _Flags:
    cancel: bool = False
    lost: bool = False


class LeaseHooks:
    """Engine hooks for one leased request: progress goes to the row, cancel comes from it."""

    def __init__(self, jobs: JobStore, lease: Lease, stop: threading.Event) -> None:
        self.jobs = jobs
        self.lease = lease
        self.stop = stop
        self.flags = _Flags()
        self._last_write = 0.0

    def apply(self, ack: StepAck) -> None:
        if ack is StepAck.CANCEL:
            self.flags.cancel = True
        elif ack is StepAck.LOST:
            self.flags.lost = True

    def progress(self, step: int, total: int, phase: str) -> None:
        now = time.monotonic()
        if step >= total or now - self._last_write >= PROGRESS_INTERVAL_S:
            self._last_write = now
            progress = overall_progress(phase, step, total)
            self.apply(self.jobs.report_step(self.lease, step, total, phase, progress))

    def raise_if_cancelled(self) -> None:
        if self.flags.lost:
            raise Cancelled("this worker's lease on the request was taken away")
        if self.flags.cancel:
            raise Cancelled("cancelled by the client")
        if self.stop.is_set():
            raise Cancelled("the worker is shutting down")

    def stopped(self, reason: str) -> Outcome:
        """What an engine's :class:`Cancelled` means for the request: the flags say who asked."""
        if self.flags.lost:
            return outcomes.LeaseLost()
        if not self.flags.cancel and self.stop.is_set():
            return outcomes.Released(reason)
        return outcomes.Cancelled(reason)


class Worker:
    def __init__(self, settings: Settings, engines: Mapping[str, Engine] | None = None) -> None:
        """``engines``: model id -> the engine serving it, already loaded (tests); by default
        the worker chooses and loads them at start (FRAMECAST_ENGINE, FRAMECAST_MODELS)."""
        self.settings = settings
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.db = create_db_engine(settings.resolved_database_url)
        self.jobs = build_job_store(self.db, settings)
        self.registry = WorkerRegistry(self.db)
        self.storage = open_storage(
            settings.storage_url, local_root=settings.media_dir, secret=settings.signing_key()
        )
        self.engines: dict[str, Engine] = dict(engines or {})
        self.stop = threading.Event()
        self.waiter = waiter_for(settings.resolved_database_url, self.stop)
        # A worker only claims requests for the models it serves.
        self.serves: list[str] = list(self.engines)
        self._state = WorkerState.LOADING
        self._current: str | None = None
        self._reason: str | None = None
        self._next_sweep = 0.0
        # Renders happen in this worker's own scratch folder, locked while it lives, so the
        # folders of workers that died (kill -9, power loss) can be told apart and removed.
        self.scratch = Scratch(settings.data_dir / "tmp", self.id)

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self, *, max_jobs: int | None = None) -> None:
        migrate(self.db)
        plan = None
        if not self.engines:
            # Decided before registering (cheap), loaded after: /readyz shows what this worker
            # will serve while it spends minutes loading weights.
            plan = try_plan(self.settings)  # None: load_with_retries tries again, saying why
            self.serves = list(plan) if plan is not None else list(self.settings.models)
        clear_stale(self.scratch.root)
        self.scratch.claim()
        self.registry.register(self.id, socket.gethostname(), os.getpid(), serves=self.serves)
        self.registry.forget_older_than(dt.timedelta(days=7))  # rows of long-gone workers
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        done = 0
        try:
            if not self.engines:
                self._load_engines(plan)
            self._state = WorkerState.IDLE
            self._beat()
            for model_id, engine in self.engines.items():
                log.info(
                    "worker %s serves %s (engine %s, model %s)",
                    self.id,
                    model_id,
                    engine.name,
                    engine.model,
                )
            while not self.stop.is_set() and (max_jobs is None or done < max_jobs):
                try:
                    lease = self._next()
                except Exception:
                    # A database hiccup (locked, restarting) must not kill the worker.
                    log.exception("worker %s: could not look for work; retrying", self.id)
                    lease = None
                if lease is None:
                    self._maybe_sweep()
                    self.waiter.wait(self.settings.poll_seconds)
                    continue
                with request_context(lease.request_id):  # on every line logged meanwhile
                    self.process(lease)
                done += 1
        finally:
            if self._state is not WorkerState.FAILED:
                self._state = WorkerState.STOPPED
            self.stop.set()
            beat.join(timeout=5)
            try:
                self._beat()
            except Exception as exc:
                # The database gone at shutdown must not skip the rest of it (the scratch
                # claim, connections) or end the process in a traceback; the row goes stale
                # and /readyz stops counting it as it would after a kill.
                log.warning("worker %s: could not record that it stopped: %s", self.id, exc)
            self.scratch.release()
            self.waiter.close()
            self.db.dispose()

    def _load_engines(self, plan: Plan | None) -> None:
        def report(reason: str) -> None:
            self._reason = reason
            log.warning("worker %s: %s", self.id, reason)
            self._beat()

        try:
            loaded_plan, self.engines = load_with_retries(
                self.settings, plan, stop=self.stop, report=report
            )
        except EngineLoadFailed as exc:
            self._state, self._reason = WorkerState.FAILED, exc.message
            raise
        self._reason = None
        if list(loaded_plan) != self.serves:  # planned only now, after a failed first try
            self.serves = list(loaded_plan)
            self.registry.beat(self.id, serves=self.serves)

    def _next(self) -> Lease | None:
        for request_id, status in self.jobs.requeue_expired():
            log.warning(
                "request %s: its worker stopped renewing its lease -> %s", request_id, status
            )
        for request_id in self.jobs.expire_overdue():
            log.info(
                "request %s: not started before its deadline -> cancelled (expired)", request_id
            )
        return self.jobs.claim(self.id, models=self.serves)

    def _maybe_sweep(self) -> None:
        retention = self.settings.retention
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.settings.retention_sweep_seconds
        try:
            if retention is not None:
                sweep(self.jobs, self.storage, retention)
            grace = dt.timedelta(seconds=self.settings.orphan_grace_seconds)
            sweep_orphan_inputs(self.jobs, self.storage, grace)
            sweep_deleted(self.jobs, self.storage)
            IdempotencyStore(self.jobs.engine).sweep_expired()
        except Exception:
            log.exception("worker %s: retention sweep failed; will retry later", self.id)

    def _heartbeat(self) -> None:
        while not self.stop.wait(self.settings.heartbeat_seconds):
            try:
                self._beat()
            except Exception:
                log.exception("heartbeat failed")

    def _beat(self) -> None:
        # One engine may serve several models (preview serves them all): each named once.
        engines = list({id(e): e for e in self.engines.values()}.values())
        self.registry.beat(
            self.id,
            state=self._state,
            reason=self._reason,
            current_request=self._current,
            engine=",".join(sorted({e.name for e in engines})) or None,
            model=",".join(sorted({e.model for e in engines})) or None,
            stages={m: list(e.stages()) for m, e in self.engines.items()} if self.engines else None,
        )

    # -- one request --------------------------------------------------------------------------

    def process(self, lease: Lease) -> None:
        job = lease.job
        log.info("request %s: claimed (attempt %d)", job.id, job.attempts)
        self._state, self._current = WorkerState.BUSY, job.id
        hooks = LeaseHooks(self.jobs, lease, self.stop)
        renewing = threading.Event()
        # Run in a copy of this context: the renewer's lines carry the request id too.
        renewer = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._renew, lease, hooks, renewing),
            daemon=True,
        )
        renewer.start()
        workdir = self.scratch.folder / f"{job.id}-{lease.token[:8]}"
        # Whatever escapes the handlers below (KeyboardInterrupt, SystemExit) still ends the
        # request: the finally writes this.
        outcome: Outcome = outcomes.Failed(
            ErrorCode.WORKER_ERROR, "the worker stopped unexpectedly"
        )
        try:
            outcome = outcomes.Succeeded(self._run_engine(lease, hooks, workdir))
        except Cancelled as why:
            outcome = hooks.stopped(str(why))
        except FramecastError as exc:
            outcome = outcomes.Failed(exc.code, exc.message)
        except MemoryError:
            outcome = outcomes.Failed(ErrorCode.OUT_OF_MEMORY, "the engine ran out of memory")
        except Exception as exc:
            log.exception("request %s: engine error", job.id)
            outcome = _describe_engine_error(exc)
        finally:
            renewing.set()
            renewer.join()
            self._finish(lease, hooks, outcome)
            shutil.rmtree(workdir, ignore_errors=True)
            self._state, self._current = WorkerState.IDLE, None

    def _run_engine(self, lease: Lease, hooks: LeaseHooks, workdir: Path) -> VideoResult:
        job = lease.job
        engine = self.engines[job.model]  # claims are only for the models served here
        params = get_model(job.model, self.settings).input.model_validate(job.input)
        try:
            data = self.storage.get_bytes(job.image_key)
        except FileNotFoundError as exc:
            raise FramecastError(
                "the stored input image is missing", code=ErrorCode.INPUT_MISSING
            ) from exc
        image = decode_image(data, max_pixels=self.settings.max_image_pixels).image
        request = params.generation_request(image)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        info = encode_mp4(
            engine.generate(request, hooks),
            workdir / "video.mp4",
            width=request.width,
            height=request.height,
            fps=request.fps,
            crf=self.settings.x264_crf,
            preset=self.settings.x264_preset,
            poster_path=workdir / "poster.jpg",
        )
        elapsed = time.perf_counter() - started
        # Storing is the last step boundary: a cancel that arrived during encoding still counts.
        hooks.apply(self.jobs.check(lease))
        hooks.raise_if_cancelled()
        video_key = f"outputs/{job.id}/video.mp4"
        poster_key = f"outputs/{job.id}/poster.jpg"
        self.storage.put_file(video_key, workdir / "video.mp4")
        self.storage.put_file(poster_key, workdir / "poster.jpg")
        metadata = {
            **engine.metadata(),
            **engine.describe(request),
            "model_id": job.model,  # the API's model; "model" is what the engine ran
            "seed": params.seed,
            "width": info.width,
            "height": info.height,
            "num_frames": info.num_frames,
            "fps": info.fps,
            "duration_s": info.duration_s,
            **{k: getattr(params, k) for k in ("aspect_ratio", "resolution") if hasattr(params, k)},
            "video_bytes": info.size_bytes,
            "generation_seconds": round(elapsed, 3),
            "worker_id": self.id,
            "attempt": job.attempts,
        }
        return VideoResult(video_key=video_key, poster_key=poster_key, metadata=metadata)

    def _renew(self, lease: Lease, hooks: LeaseHooks, done: threading.Event) -> None:
        interval = self.settings.lease_seconds / 3
        while not done.wait(interval):
            try:
                if not self.jobs.renew(lease):
                    hooks.flags.lost = True
                    log.warning(
                        "request %s: lease lost; stopping at the next step", lease.request_id
                    )
                    return
                hooks.apply(self.jobs.check(lease))
            except Exception:
                log.exception("request %s: lease renewal failed; will retry", lease.request_id)

    def _finish(self, lease: Lease, hooks: LeaseHooks, outcome: Outcome) -> None:
        """Write the request's final status; a lost lease means someone else owns it now."""
        request_id = lease.request_id
        if hooks.flags.lost:  # found out after the engine finished: the writes would be refused
            outcome = outcomes.LeaseLost()
        match outcome:
            case outcomes.LeaseLost():
                log.warning("request %s: lease was lost; leaving it to its new owner", request_id)
                return
            case outcomes.Released():
                written = self.jobs.release(lease)
                log.info("request %s: given back to the queue (worker stopping)", request_id)
            case outcomes.Cancelled(reason):
                written = self.jobs.finish_cancelled(lease)
                log.info("request %s: cancelled (%s)", request_id, reason)
            case outcomes.Succeeded(result):
                written = self.jobs.complete(lease, result)
                log.info("request %s: completed", request_id)
            case outcomes.Failed(code, message):
                written = self.jobs.fail(lease, code, message)
                log.warning("request %s: failed: %s: %s", request_id, code, message)
            case _:
                assert_never(outcome)
        if not written:
            log.warning(
                "request %s: final status (%s) refused: the lease was taken away",
                request_id,
                type(outcome).__name__,
            )


def _describe_engine_error(exc: Exception) -> outcomes.Failed:
    # Out of memory is not among these: engines raise it as EngineOutOfMemory, a FramecastError.
    name = type(exc).__name__
    return outcomes.Failed(ErrorCode.ENGINE_ERROR, f"the engine failed: {name}: {exc}"[:1000])


def run_worker(settings: Settings, *, exit_with_parent: bool = False) -> None:
    """Entry point of ``framecast worker``: run until SIGTERM/SIGINT, then stop cleanly.

    ``exit_with_parent``: stop (giving the request back) if the process that started this one
    dies, so a killed ``framecast serve`` leaves no orphan workers behind.
    """

    check_data_dir(settings)  # its scratch folder (and, by default, the database) live there
    worker = Worker(settings)
    if exit_with_parent:
        parent = os.getppid()

        def _watch_parent() -> None:
            while not worker.stop.wait(1.0):
                if os.getppid() != parent:
                    log.warning("worker %s: parent process %d is gone; stopping", worker.id, parent)
                    worker.stop.set()

        threading.Thread(target=_watch_parent, name="parent-watch", daemon=True).start()

    run_until_signalled(worker)


def run_until_signalled(worker: Worker) -> None:
    """Run ``worker`` in this (main) thread until SIGTERM or SIGINT, which stop it at the next
    step boundary, giving back a request it has not finished."""
    import signal

    def _stop(signum: int, _frame: object) -> None:
        log.info("worker %s: signal %d, stopping at the next step boundary", worker.id, signum)
        worker.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run()
