"""Queue, cancel, failure, a killed worker and a restarted server, with a slowed-down engine,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from .conftest import SUBMIT_PATH, Server, png_bytes, wait_for

DATA_URL = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()


def _submit(c: httpx.Client, prompt: str = "pan left across the room", **options: str | int) -> str:
    # Leases and restarts do not depend on the video's size: those tests ask for 360p and as
    # many frames as the request must run for at the server's step delay, sparing the CPU.
    r = c.post(SUBMIT_PATH, json={"prompt": prompt, "image_url": DATA_URL, **options})
    assert r.status_code == 200, r.text
    return str(r.json()["request_id"])


@pytest.fixture(scope="module")
def slow(make_server: Callable[..., Server], backend: dict[str, str]) -> Server:
    # ~129 x 0.04 s = 5 s a request: long enough to watch, queue behind and cancel.
    s = make_server(preview_step_seconds="0.04", lease_seconds="2", max_attempts="3", **backend)
    s.start()
    return s


def test_queue_positions_cancel_and_conflict(slow: Server) -> None:
    with slow.client() as c:
        running = _submit(c)
        wait_for(c, running, {"in_progress"})
        second, third = _submit(c), _submit(c)
        assert c.get(f"/v1/requests/{second}/status").json()["queue_position"] == 0
        assert c.get(f"/v1/requests/{third}/status").json()["queue_position"] == 1

        r = c.post(f"/v1/requests/{second}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert r.json()["outcome"] == "cancelled"
        assert c.get(f"/v1/requests/{third}/status").json()["queue_position"] == 0

        deadline = time.monotonic() + 60  # a hang guard
        while (status := c.get(f"/v1/requests/{running}/status").json())["step"] < 2:
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["total_steps"] == 129 and status["phase"] == "rendering"
        assert status["progress"] == pytest.approx(status["step"] / 129, abs=1e-3)
        r = c.post(f"/v1/requests/{running}/cancel")
        assert r.status_code == 202 and r.json()["cancel_requested"] is True
        assert r.json()["outcome"] == "cancel_requested"
        final = wait_for(c, running, {"cancelled", "completed"}, timeout=30)
        assert final["status"] == "cancelled"
        result = c.get(f"/v1/requests/{running}/result").json()
        assert result["status"] == "cancelled" and "output" not in result

        r = c.post(f"/v1/requests/{running}/cancel")
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "request_already_finished"
        assert r.json()["error"]["request"]["status"] == "cancelled"
        assert r.json()["outcome"] == "not_cancellable" and r.json()["error_code"] == 409001

        # The cancelled queued request never ran; the third one runs next.
        wait_for(c, third, {"in_progress", "completed"})
        second_status = c.get(f"/v1/requests/{second}/status").json()
        assert second_status["status"] == "cancelled" and second_status.get("started_at") is None
        c.post(f"/v1/requests/{third}/cancel")
        wait_for(c, third, {"cancelled", "completed"})


def test_a_failed_request_reports_its_error_and_the_worker_goes_on(slow: Server) -> None:
    with slow.client() as c:
        blocker = _submit(c)
        wait_for(c, blocker, {"in_progress"})
        doomed, after = _submit(c), _submit(c)
        for f in (slow.data_dir / "media" / "inputs" / doomed).iterdir():
            f.unlink()  # the stored input vanishes: the worker must fail it cleanly
        c.post(f"/v1/requests/{blocker}/cancel")
        failed = wait_for(c, doomed, {"failed", "completed", "cancelled"})
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == "input_missing" and failed["error"]["message"]
        assert c.get(f"/v1/requests/{doomed}/result").json()["error"]["code"] == "input_missing"
        wait_for(c, after, {"in_progress"})
        c.post(f"/v1/requests/{after}/cancel")
        assert wait_for(c, after, {"cancelled", "completed"})["status"] == "cancelled"


def test_a_killed_worker_request_is_requeued_and_finished_by_another(slow: Server) -> None:
    with slow.client() as c:
        # Killed at once, so 17 frames (0.7 s) suffice; the second attempt runs them all.
        rid = _submit(c, "push in", resolution="360p", num_frames=17)
        wait_for(c, rid, {"in_progress"})
        [pid] = slow.worker_pids()
        os.kill(pid, signal.SIGKILL)
        # serve restarts the worker; once the 2 s lease runs out the request is requeued.
        final = wait_for(c, rid, {"completed", "failed", "cancelled"}, timeout=120)
        assert final["status"] == "completed", final
        meta = c.get(f"/v1/requests/{rid}/result").json()["metadata"]
        assert meta["attempt"] == 2
        assert str(pid) not in meta["worker_id"].split("-")


def test_nothing_is_lost_across_a_restart(slow: Server) -> None:
    # The module's server, restarted: it comes back with the same settings and data, so the
    # tests after this one still have it.
    with slow.client() as c:
        done = _submit(c, resolution="360p", num_frames=5)
        wait_for(c, done, {"completed"})
        video_before = httpx.get(
            c.get(f"/v1/requests/{done}/result").json()["output"]["video"]
        ).content
        # 49 frames x 0.04 s: still rendering when SIGTERM reaches its worker, so it is given back.
        running = _submit(c, resolution="360p", num_frames=49)
        wait_for(c, running, {"in_progress"})
        queued = [_submit(c, resolution="360p", num_frames=5) for _ in range(2)]
    slow.stop()  # SIGTERM: the running request goes back to the queue
    slow.start()
    with slow.client() as c:
        result = c.get(f"/v1/requests/{done}/result").json()
        assert result["status"] == "completed"
        assert httpx.get(result["output"]["video"]).content == video_before
        for rid in [running, *queued]:
            assert (
                wait_for(c, rid, {"completed", "failed", "cancelled"}, timeout=120)["status"]
                == "completed"
            )
    assert f"request {running}: given back to the queue" in slow.log()


def test_workers_do_not_outlive_a_killed_server(make_server: Callable[..., Server]) -> None:
    server = make_server(preview_step_seconds="0.05", lease_seconds="2")
    server.start()
    with server.client() as c:
        # 65 frames x 0.05 s: its worker is mid-request when it finds its parent gone (within 1 s).
        rid = _submit(c, resolution="360p", num_frames=65)
        wait_for(c, rid, {"in_progress"})
    pids = server.worker_pids()
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait()
    deadline = time.monotonic() + 60  # a hang guard: they look for their parent every second
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        assert time.monotonic() < deadline, "worker kept running after its server was killed"
        time.sleep(0.1)
    # No step delay after the restart: that run only has to finish.
    server.env["FRAMECAST_PREVIEW_STEP_SECONDS"] = "0"
    server.start()
    with server.client() as c:
        assert wait_for(c, rid, {"completed", "failed", "cancelled"})["status"] == "completed"
