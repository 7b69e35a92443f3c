"""The remote CLI and the Python client against a real `framecast serve` on loopback: a real
MP4 comes back, Ctrl-C cancels the request on the server, errors are one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest

from framecast.client import APIError, Client, RequestStatus, image_reference

from .conftest import KEY_A, Server, wait_for

SAMPLE = Path(__file__).parents[2] / "src/framecast/assets/sample.jpg"
MODEL = "tencent/hunyuan/image-to-video"


@pytest.fixture(scope="module")
def server(make_server: Callable[..., Server]) -> Iterator[Server]:
    # A short pause per frame: slow enough to see steps and to interrupt a long render.
    srv = make_server(workers=1, preview_step_seconds=0.04)
    srv.start()
    yield srv
    srv.stop()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "framecast", *args]


def env_for(server: Server, key: str = KEY_A) -> dict[str, str]:
    return {**os.environ, "FRAMECAST_SERVER": server.base_url, "FRAMECAST_KEY": key}


def frames_of(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return len(frames), frames[0].width, frames[0].height


def test_submit_follows_the_request_and_writes_the_video(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    done = subprocess.run(
        [
            *cli("submit", str(SAMPLE), "--prompt", "push in", "-o", str(out)),
            "--resolution",
            "360p",
            "--num-frames",
            "9",
            "--seed",
            "5",
            "--poll-interval",
            "0.1",
        ],
        env=env_for(server),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert frames_of(out) == (9, 608, 352)
    # Not a TTY: plain progress lines, the steps among them, then the summary on stdout.
    assert "rendering" in done.stderr and "/9" in done.stderr, done.stderr
    assert done.stdout.startswith(f"wrote {out} (608x352, 9 frames, engine preview")


def test_ctrl_c_cancels_the_request_on_the_server(server: Server, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *cli("submit", str(SAMPLE), "--prompt", "p", "-o", str(tmp_path / "x.mp4")),
            "--num-frames",
            "129",
            "--resolution",
            "360p",
            "--poll-interval",
            "0.1",
        ],
        env=env_for(server),
        stderr=subprocess.PIPE,
        text=True,
        # A shell runs a background job (`make test &`) with SIGINT ignored, and a child keeps
        # that: Python then never turns the signal into KeyboardInterrupt. A user's Ctrl-C
        # arrives with the default disposition, so the child gets it back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    request_id = None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("request "):
            request_id = line.split()[1]
        if line.startswith("rendering"):
            break
    assert request_id is not None, lines
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=30) == 130, [*lines, rest]
    assert f"request {request_id}: cancel requested" in rest, rest
    with server.client() as http:
        assert wait_for(http, request_id, {"cancelled"}, timeout=30)["status"] == "cancelled"
    assert not (tmp_path / "x.mp4").exists()


def test_errors_are_one_line_with_the_servers_message(server: Server) -> None:
    done = subprocess.run(
        cli("status", "no-such-request"),
        env=env_for(server),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr == "error: no request with id no-such-request\n"
    done = subprocess.run(
        cli("submit", str(SAMPLE), "--prompt", "p", "--num-frames", "8"),
        env=env_for(server, key="wrong"),
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stderr) == (1, "error: invalid or revoked API key\n")
    keyless = {k: v for k, v in env_for(server).items() if k != "FRAMECAST_KEY"}
    done = subprocess.run(cli("status", "x"), env=keyless, capture_output=True, text=True)
    # The CLI's way to give a key, not the HTTP header the server's message is about.
    assert done.returncode == 1 and "--key" in done.stderr and "FRAMECAST_KEY" in done.stderr
    assert "Authorization" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_client_subscribe_shows_progress_and_returns_the_result(
    server: Server, tmp_path: Path
) -> None:
    seen: list[RequestStatus] = []
    with Client(server.base_url, KEY_A) as client:
        result = client.subscribe(
            MODEL,
            {
                "prompt": "pan",
                "image_url": image_reference(SAMPLE),
                "resolution": "360p",
                "num_frames": 25,
            },
            on_progress=seen.append,
            poll_interval=0.05,
        )
        assert result.status == "completed" and result.metadata is not None
        assert result.metadata["num_frames"] == 25
        assert frames_of(client.download(result, tmp_path / "v.mp4")) == (25, 608, 352)
        with pytest.raises(APIError) as err:
            client.result("no-such-request")
    steps = [s.step for s in seen if s.status == "in_progress" and s.step is not None]
    assert len(steps) >= 2 and steps == sorted(steps), [s.status for s in seen]
    assert seen[-1].status == "completed"
    e = err.value
    assert (e.status_code, e.error_code, e.code) == (404, 404001, "request_not_found")
