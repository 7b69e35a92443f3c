"""Many workers on PostgreSQL, and S3-compatible storage: the real server, real worker
processes, a real PostgreSQL and moto's S3 server, all on loopback."""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import httpx
import pytest

from .conftest import SUBMIT_PATH, Server, pg_schema_env, png_bytes, wait_for

DATA_URL = "data:image/png;base64," + base64.b64encode(png_bytes((96, 54))).decode()
SMALL = {"resolution": "360p", "num_frames": 5}


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> dict[str, str]:
    return pg_schema_env(request)


def test_four_workers_a_hundred_requests_each_run_exactly_once(
    make_server: Callable[..., Server], pg: dict[str, str]
) -> None:
    # A hundred: each of the four workers claims about 25 times against the other three, and
    # every request is queued behind dozens, which is what the claims and positions need; 200
    # only doubled the time (submitting alone took 6 s on 2 cores).
    server = make_server(workers="4", x264_preset="ultrafast", lease_seconds="10", **pg)
    server.start()
    with server.client() as c:
        ids = []
        for i in range(100):
            r = c.post(
                SUBMIT_PATH, json={"prompt": f"pan left {i}", "image_url": DATA_URL, **SMALL}
            )
            assert r.status_code == 200, r.text
            ids.append(r.json()["request_id"])
        positions: dict[str, list[int]] = {rid: [] for rid in ids}
        deadline = time.monotonic() + 600
        pending = set(ids)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} requests never finished"
            for rid in list(pending):
                body = c.get(f"/v1/requests/{rid}/status").json()
                if body["status"] == "in_queue":
                    positions[rid].append(body["queue_position"])
                elif body["status"] in {"completed", "failed", "cancelled"}:
                    assert body["status"] == "completed", body
                    pending.discard(rid)
        results = [c.get(f"/v1/requests/{rid}/result").json() for rid in ids]
    # A queued request only ever moves forward, and never past the front.
    for rid, seen in positions.items():
        assert seen == sorted(seen, reverse=True) and all(p >= 0 for p in seen), (rid, seen)
    # Exactly once: one claim each in the workers' logs, first attempt, four workers sharing.
    claims = Counter(re.findall(r"request ([0-9a-f-]{36}): claimed", server.log()))
    assert set(claims) == set(ids) and set(claims.values()) == {1}
    assert {r["metadata"]["attempt"] for r in results} == {1}
    per_worker = Counter(r["metadata"]["worker_id"] for r in results)
    assert len(per_worker) == 4, per_worker


def _s3_env(s3_server: str, bucket: str) -> dict[str, str]:
    import boto3  # type: ignore[import-untyped]

    boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _objects(s3_server: str, bucket: str) -> list[str]:
    import boto3

    client = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("s3", endpoint_url=s3_server)
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_postgres_and_s3_end_to_end_then_retention_removes_the_files(
    make_server: Callable[..., Server],
    pg: dict[str, str],
    s3_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in _s3_env(s3_server, "fleet").items():
        monkeypatch.setenv(name, value)  # the server process inherits the environment
    # No retention while the output is checked: a retention of seconds could remove the
    # files before a loaded machine has fetched them. It is switched on by a restart below.
    server = make_server(storage_url="s3://fleet/prod", x264_preset="ultrafast", **pg)
    server.start()
    with server.client() as c:
        r = c.post(SUBMIT_PATH, json={"prompt": "tilt up", "image_url": DATA_URL, **SMALL})
        rid = r.json()["request_id"]
        assert wait_for(c, rid, {"completed", "failed"})["status"] == "completed"
        res: dict[str, Any] = c.get(f"/v1/requests/{rid}/result").json()
        link = res["output"]["video"]
        assert urlsplit(link).netloc == urlsplit(s3_server).netloc
        assert "X-Amz-Signature" in link
        stored = _objects(s3_server, "fleet")
        assert f"prod/outputs/{rid}/video.mp4" in stored
        assert any(k.startswith(f"prod/inputs/{rid}/") for k in stored)
        video = httpx.get(link)
        assert video.status_code == 200
        (tmp_path / "v.mp4").write_bytes(video.content)
        with av.open(str(tmp_path / "v.mp4")) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (608, 352)

    server.stop()
    server.env.update(FRAMECAST_RETENTION="1s", FRAMECAST_RETENTION_SWEEP_SECONDS="0.5")
    server.start()
    with server.client() as c:
        deadline = time.monotonic() + 60  # a hang guard: the sweep runs every 0.5 s
        while (body := c.get(f"/v1/requests/{rid}/result").json()).get("output"):
            assert time.monotonic() < deadline, "retention never removed the files"
            time.sleep(0.3)
    assert body["status"] == "completed" and body["data_removed_at"]
    assert not [k for k in _objects(s3_server, "fleet") if rid in k]
