"""A real 2-process worker (``framecast worker --parallel 2``, gloo, tiny model) on a real queue:
it completes a request; killing its rank 1 mid-request stops the whole group with one line and
exit code 4, and the request goes back to the queue through its lease and is stored once; a rank
that hangs stops the group the same way once the collective timeout passes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from framecast.db import migrate
from framecast.engines.hunyuan.engine import HunyuanEngine
from framecast.engines.hunyuan.weights import resolve_model
from framecast.models.hunyuan_i2v import MODEL_ID
from framecast.queue.jobs import Job
from framecast.settings import Settings
from framecast.states import Status
from framecast.worker.group import GROUP_BROKEN
from framecast.worker.loop import Worker

from .tiny_jobs import submit


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Worker]:
    """An in-process worker on the same database and storage: it submits, and runs what the
    group gave back."""
    settings = Settings(
        data_dir=tmp_path, x264_preset="ultrafast", heartbeat_seconds=60, lease_seconds=2
    )
    worker = Worker(settings, engines={MODEL_ID: HunyuanEngine.load(resolve_model("tiny-random"))})
    migrate(worker.db)
    yield worker
    worker.db.dispose()


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 180) -> None:
    # A guard against a hang, not a bound on speed: two ranks importing torch and loading the
    # model beside the rest of the suite on two cores have taken over a minute to start.
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _job(queue: Worker, request_id: str) -> Job:
    job = queue.jobs.get(request_id)
    assert job is not None
    return job


def _rank1_pid(leader: int) -> int:
    for child in Path(f"/proc/{leader}/task/{leader}/children").read_text().split():
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise AssertionError("rank 1 is not running")


def _outputs(queue: Worker, request_id: str) -> list[str]:
    folder = queue.settings.data_dir / "media" / "outputs" / request_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _start_group(tmp_path: Path, timeout_s: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "FRAMECAST_DATA_DIR": str(tmp_path),
        "FRAMECAST_DEVICE": "cpu",
        "FRAMECAST_ENGINE": "hunyuan",
        "FRAMECAST_HUNYUAN_MODEL": "tiny-random",
        "FRAMECAST_X264_PRESET": "ultrafast",
        "FRAMECAST_LEASE_SECONDS": "2",
        "FRAMECAST_POLL_SECONDS": "0.1",
        "FRAMECAST_PARALLEL_TIMEOUT_SECONDS": str(timeout_s),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "framecast", "worker", "--parallel", "2"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_group_worker_completes_a_request_then_a_dead_rank_requeues_its_request(
    queue: Worker, tmp_path: Path
) -> None:
    first = submit(queue)
    group = _start_group(tmp_path, timeout_s=30)
    try:
        _wait("the first request", lambda: _job(queue, first).status is Status.COMPLETED)
        assert _outputs(queue, first) == ["poster.jpg", "video.mp4"]

        slow = submit(queue, num_inference_steps=8)
        _wait("the slow request to start", lambda: (_job(queue, slow).step or 0) >= 2)
        os.kill(_rank1_pid(group.pid), signal.SIGKILL)
        _, stderr = group.communicate(timeout=30)
    finally:
        if group.poll() is None:
            group.kill()
            group.wait()
    assert group.returncode == GROUP_BROKEN
    said = [line for line in stderr.splitlines() if line.startswith("framecast: ")]
    assert len(said) == 1, stderr[-2000:]
    assert "rank 1" in said[0] and "exited with code -9" in said[0], said[0]
    # The group stored nothing and finished nothing: the request waits for its lease to run out.
    assert _job(queue, slow).status is Status.IN_PROGRESS
    assert _outputs(queue, slow) == []

    time.sleep(2.1)
    assert [request_id for request_id, _ in queue.jobs.requeue_expired()] == [slow]
    lease = queue.jobs.claim(queue.id)
    assert lease is not None and lease.job.id == slow
    queue.process(lease)
    done = _job(queue, slow)
    assert done.status is Status.COMPLETED and done.attempts == 2
    assert _outputs(queue, slow) == ["poster.jpg", "video.mp4"]


@pytest.mark.slow
def test_a_hung_rank_stops_the_group_once_the_timeout_passes(queue: Worker, tmp_path: Path) -> None:
    group = _start_group(tmp_path, timeout_s=4)
    stopped: int | None = None
    try:
        slow = submit(queue, num_inference_steps=8)
        _wait("the request to start", lambda: (_job(queue, slow).step or 0) >= 2)
        stopped = _rank1_pid(group.pid)
        os.kill(stopped, signal.SIGSTOP)  # alive, holding its socket, answering nothing
        started = time.monotonic()
        _, stderr = group.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if group.poll() is None:
            group.kill()
            group.wait()
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGKILL)
    assert group.returncode == GROUP_BROKEN, stderr[-2000:]
    said = [line for line in stderr.splitlines() if line.startswith("framecast: ")]
    assert len(said) == 1, stderr[-2000:]
    # The timeout the group enforced, whatever gloo's words for it.
    assert "timed out: a rank did not answer for 4 s" in said[0], said[0]
    assert took >= 3.5, f"stopped after {took:.1f} s, before the 4 s timeout"
    assert _job(queue, slow).status is Status.IN_PROGRESS  # back to the queue by its lease
    assert _outputs(queue, slow) == []
