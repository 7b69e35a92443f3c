"""``framecast serve``: the API in this process, N worker processes beside it, kept alive."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping

import uvicorn

from framecast.admission.keys import KeyStore
from framecast.api.app import create_app
from framecast.db import describe_database
from framecast.settings import Settings
from framecast.startup import EXIT_ENGINE_UNAVAILABLE, bind_socket, check_data_dir, uses_data_dir
from framecast.webhooks.dispatcher import DispatcherThread

log = logging.getLogger("framecast.cli.serve")

STOP_GRACE_S = 30.0
"""How long stopping workers get to give their request back before they are killed."""


def _env_value(value: object) -> str | None:
    """A setting's value as its FRAMECAST_* variable reads it back; None: leave it unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dt.timedelta):
        return str(value.total_seconds())
    return str(value)


def child_environment(settings: Settings, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of a process that must run with ``settings`` (``serve``'s workers): the
    flags given to ``serve`` and the settings built in code reach it only this way."""
    env = dict(base)
    for name in Settings.model_fields:
        variable = f"FRAMECAST_{name.upper()}"
        value = _env_value(getattr(settings, name))
        if value is None:
            env.pop(variable, None)
        else:
            env[variable] = value
    return env


class WorkerPool:
    """Worker subprocesses, restarted (with a back-off) when one exits unexpectedly."""

    def __init__(self, size: int, env: Mapping[str, str] | None = None) -> None:
        self.size = size
        self.env = dict(env) if env is not None else None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopping = threading.Event()
        self.given_up: set[int] = set()
        self._monitor = threading.Thread(target=self._watch, name="worker-pool", daemon=True)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "framecast", "worker", "--exit-with-parent"], env=self.env
        )

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.size)]
        log.info("started %d worker process(es): %s", self.size, [p.pid for p in self.procs])
        self._monitor.start()

    def _watch(self) -> None:
        backoff = 1.0
        while not self.stopping.wait(1.0):
            for i, proc in enumerate(self.procs):
                code = proc.poll()
                if code is None or self.stopping.is_set() or proc.pid in self.given_up:
                    continue
                if code == EXIT_ENGINE_UNAVAILABLE:
                    # It already tried (FRAMECAST_ENGINE_LOAD_ATTEMPTS) and said why, in its log
                    # and in /readyz; restarting it would only repeat that.
                    log.error(
                        "worker %d could not load its engine; not restarting it (its reason is "
                        "in the log above and in /readyz)",
                        proc.pid,
                    )
                    self.given_up.add(proc.pid)
                    continue
                log.error("worker %d exited with %s; restarting in %.0f s", proc.pid, code, backoff)
                if self.stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, 60.0)
                self.procs[i] = self._spawn()

    def stop(self) -> None:
        self.stopping.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises SIGTERM/SIGINT once it has shut down, which would end this process
        # before it could stop its workers; here the signal only asks the server to exit.
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


API_SWITCH_INTERVAL = 0.001
"""Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005).

The event loop's thread waits up to this long for the GIL each time it wakes, and a request
wakes it several times, while threads decode large submits (data: URIs, images). At 5 ms,
8 submits of a 67 MB data: URI at once kept ``/healthz`` waiting up to 107-144 ms on a 2-core
machine; at 1 ms, 57-87 ms over five runs (docs/performance.md). The threads' own throughput
barely changes: what they do mostly runs in C calls that a switch does not interrupt."""


def _say_where(settings: Settings, keys: KeyStore) -> None:
    """Which data folder and database this server uses, and a warning when no key can call it."""
    log.info(
        "data folder %s, database %s",
        settings.data_dir.resolve(),
        describe_database(settings.resolved_database_url),
    )
    if not settings.api_keys and all(key.revoked_at is not None for key in keys.list()):
        log.warning(
            "no API keys: every request will be refused with a 401; create one with "
            "`framecast keys create` (run with this data folder), or start with --dev for one"
        )


def serve(settings: Settings, *, dev: bool = False) -> None:
    """Run the API and the workers until SIGTERM/SIGINT; ``dev``: print a development key first.
    Raises :class:`StartupError` (one line, an exit code) for a data folder it cannot write or a
    port it cannot listen on, before anything else is printed."""
    if dev or uses_data_dir(settings, worker=settings.workers > 0):
        check_data_dir(settings)  # --dev keeps its key there
    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    try:
        # create_app migrates the database, before any worker starts: they never race to create it.
        app = create_app(settings)
        keys: KeyStore = app.state.services.keys
        if dev:
            from framecast.cli.devkey import print_dev_banner

            print_dev_banner(settings, keys, port)
        _say_where(settings, keys)
    except BaseException:
        sock.close()
        raise
    log.info("listening on http://%s:%d", f"[{host}]" if ":" in host else host, port)
    pool = WorkerPool(settings.workers, child_environment(settings))
    pool.start()
    # In this process rather than in the workers: see framecast.webhooks.dispatcher.
    dispatcher = DispatcherThread(settings) if settings.webhook_dispatcher else None
    if dispatcher is not None:
        dispatcher.start()
    try:
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            proxy_headers=True,
            log_level="info",
            # uvicorn's records go through framecast's handler (FRAMECAST_LOG_FORMAT) instead
            # of uvicorn's own.
            log_config=None,
            access_log=False,
        )
        sys.setswitchinterval(API_SWITCH_INTERVAL)
        _Server(config).run(sockets=[sock])
    finally:
        if dispatcher is not None:
            dispatcher.stop()
        pool.stop()
        sock.close()
