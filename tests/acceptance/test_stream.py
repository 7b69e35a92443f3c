"""The status stream, ``Prefer: wait``, the client's ``subscribe()`` and ``framecast list``
against real servers on loopback: two API nodes on one database, the worker behind node A;
streams and waits on node B, so what B says can only come from the database."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from framecast.client import Client, RequestStatus
from framecast.client.sse import EventDecoder

from .conftest import KEY_A, SUBMIT_PATH, Server, png_bytes

MODEL = SUBMIT_PATH.removeprefix("/v1/models/")
ORDER = {"in_queue": 0, "in_progress": 1, "completed": 2}


@pytest.fixture(scope="module")
def nodes(
    make_server: Callable[..., Server], backend: dict[str, str]
) -> Iterator[tuple[Server, Server]]:
    shared = {"secret_key": "stream-test-secret", **backend}
    # A: the worker, with steps slow enough to watch. B: API only, on A's database.
    node_a = make_server(workers=1, preview_step_seconds=0.1, **shared)
    node_a.start()
    database = backend.get("database_url") or f"sqlite:///{node_a.data_dir / 'framecast.db'}"
    node_b = make_server(workers=0, **{**shared, "database_url": database})
    node_b.start()
    yield node_a, node_b
    node_b.stop()
    node_a.stop()


def fields(num_frames: int = 17) -> dict[str, Any]:
    return {
        "prompt": "push in",
        "image_url": "data:image/png;base64," + base64.b64encode(png_bytes()).decode(),
        "resolution": "360p",
        "num_frames": num_frames,
    }


def submit(server: Server, num_frames: int = 17) -> str:
    with server.client() as client:
        r = client.post(SUBMIT_PATH, json=fields(num_frames))
    assert r.status_code == 200, r.text
    request_id: str = r.json()["request_id"]
    return request_id


def test_the_stream_delivers_each_state_as_it_happens_and_ends(
    nodes: tuple[Server, Server],
) -> None:
    node_a, node_b = nodes
    request_id = submit(node_a)
    arrivals: list[tuple[float, dict[str, Any]]] = []
    decoder = EventDecoder()
    with (
        node_b.client() as client,
        client.stream(
            "GET",
            f"/v1/requests/{request_id}/status/stream",
            timeout=httpx.Timeout(10, read=30),
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():  # ends only when the server closes the stream
            event = decoder.feed(line)
            if event is not None:
                arrivals.append((time.monotonic(), json.loads(event.data)))
    statuses = [body["status"] for _, body in arrivals]
    assert statuses[-1] == "completed" and statuses.count("completed") == 1
    assert [ORDER[s] for s in statuses] == sorted(ORDER[s] for s in statuses)
    running = [(t, body) for t, body in arrivals if body["status"] == "in_progress"]
    steps = [body["step"] for _, body in running if body["phase"] == "rendering"]
    assert len(steps) >= 5 and steps == sorted(steps), steps
    # Delivered while rendering (17 frames at 0.1 s), not all at once at the end.
    assert arrivals[-1][0] - running[0][0] >= 0.8, arrivals
    with node_b.client() as client:
        assert client.get(f"/v1/requests/{request_id}/status").json() == arrivals[-1][1]


def test_prefer_wait_answers_when_the_request_ends(nodes: tuple[Server, Server]) -> None:
    node_a, node_b = nodes
    request_id = submit(node_a, num_frames=9)
    started = time.monotonic()
    with node_b.client() as client:
        r = client.get(
            f"/v1/requests/{request_id}/status",
            headers={"Prefer": "wait=60"},
            timeout=httpx.Timeout(10, read=70),
        )
    took = time.monotonic() - started
    assert r.status_code == 200
    assert r.json()["status"] == "completed"
    assert r.headers["preference-applied"] == "wait=60"
    assert took < 60 / 2, took  # it answered at the end, not after the 60 s


def test_the_client_subscribes_through_the_stream_and_sees_progress(
    nodes: tuple[Server, Server],
) -> None:
    node_a, _ = nodes  # submits go where the worker's inputs are (the nodes share no store)
    paths: list[str] = []
    http = httpx.Client(
        timeout=30, event_hooks={"request": [lambda request: paths.append(request.url.path)]}
    )
    seen: list[RequestStatus] = []
    with Client(node_a.base_url, KEY_A, http_client=http) as client:
        result = client.subscribe(MODEL, fields(17), on_progress=seen.append, timeout=60)
    assert result.status == "completed" and result.video_url is not None
    assert any(p.endswith("/status/stream") for p in paths), paths
    assert not any(p.endswith("/status") for p in paths), paths  # no polling was needed
    steps = [s.step or 0 for s in seen if s.status == "in_progress" and s.phase == "rendering"]
    # On SQLite the stream polls the database, so a busy machine may see every other step of
    # 17; progress must still show several distinct steps, in order.
    assert len(set(steps)) >= 3 and steps == sorted(steps), seen
    assert seen[-1].status == "completed"


def test_framecast_list_shows_the_keys_requests(nodes: tuple[Server, Server]) -> None:
    node_a, node_b = nodes
    newest = submit(node_a, num_frames=5)
    env = {**os.environ, "FRAMECAST_SERVER": node_b.base_url, "FRAMECAST_KEY": KEY_A}
    done = subprocess.run(
        [sys.executable, "-m", "framecast", "list", "--limit", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] == newest, done.stdout
    assert "more: framecast list --cursor " in done.stderr
    cursor = done.stderr.split("--cursor ")[1].split()[0]
    rest = subprocess.run(
        [sys.executable, "-m", "framecast", "list", "--cursor", cursor],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rest.returncode == 0, rest.stderr
    assert newest not in rest.stdout and rest.stdout.strip()
