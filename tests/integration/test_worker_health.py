"""The GPU image's health check (``python -m framecast.worker.health``): healthy while a worker
of this host beats, unhealthy once it is silent, stopped or gave up, or the database is not
there."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from framecast.db import create_db_engine, migrate, utcnow, workers
from framecast.queue.registry import WorkerRegistry, WorkerState
from framecast.settings import Settings
from framecast.worker.health import main, why_unhealthy

HOST = "gpu-box-1"


def test_healthy_only_while_a_worker_of_this_host_beats(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert "cannot read the workers' heartbeats" in str(why_unhealthy(settings, HOST))
    db = create_db_engine(settings.resolved_database_url)
    migrate(db)
    registry = WorkerRegistry(db)
    registry.register("elsewhere", "gpu-box-2", 1)
    assert f"no worker on {HOST}" in str(why_unhealthy(settings, HOST))
    registry.register("here", HOST, 1)  # still loading its engine: alive
    assert why_unhealthy(settings, HOST) is None
    # Its last beat an hour ago: written, not waited for.
    with db.begin() as conn:
        conn.execute(
            update(workers)
            .where(workers.c.id == "here")
            .values(heartbeat_at=utcnow() - dt.timedelta(hours=1))
        )
    assert why_unhealthy(settings, HOST) is not None
    registry.beat("here", state=WorkerState.FAILED, reason="torch not installed")  # a fresh beat
    assert why_unhealthy(settings, HOST) is not None
    registry.beat("here", state=WorkerState.IDLE)
    assert why_unhealthy(settings, HOST) is None
    db.dispose()


def test_the_module_answers_in_docker_healthcheck_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRAMECAST_DATA_DIR", str(tmp_path))
    db = create_db_engine(Settings(data_dir=tmp_path).resolved_database_url)
    migrate(db)
    assert main() == 1
    assert capsys.readouterr().err.startswith("unhealthy: no worker on")
    WorkerRegistry(db).register("here", socket.gethostname(), os.getpid())
    db.dispose()
    # As Docker runs it: the module, in a process of its own.
    command = [sys.executable, "-m", "framecast.worker.health"]
    alive = subprocess.run(
        command, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert alive.returncode == 0 and alive.stderr == "", alive.stderr
