"""The HTTP contract, end to end: a real server process, a real worker, real MP4 files.

Only what needs the processes is here; each route's contract (keys, 404s, 409s, 422s, signed
links, the error shape) is tested in-process in tests/integration/test_api_*.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from .conftest import SUBMIT_PATH, Server, wait_for


@pytest.fixture(scope="module")
def server(make_server: Callable[..., Server]) -> Server:
    # The contract does not depend on how hard x264 tries; "ultrafast" halves the encoding.
    s = make_server(allow_private_urls="true", x264_preset="ultrafast")
    s.start()
    return s


def _decode(data: bytes, tmp_path: Path) -> tuple[int, int, int, float]:
    path = tmp_path / "out.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert stream.average_rate is not None
        return frames, stream.width, stream.height, float(stream.average_rate)


@pytest.mark.parametrize(
    ("aspect_ratio", "image", "size", "asked_frames"),
    # The first leaves num_frames out (RunComfy's default, 129); the second asks for 33, which
    # keeps the portrait video (and its encoding) short.
    [("16:9", "harbour.jpg", (1248, 704), None), ("9:16", "portrait.png", (704, 1248), 33)],
)
def test_submit_poll_and_download_a_real_video(
    server: Server,
    image_server: tuple[str, Path],
    tmp_path: Path,
    aspect_ratio: str,
    image: str,
    size: tuple[int, int],
    asked_frames: int | None,
) -> None:
    base, _ = image_server
    frames = {} if asked_frames is None else {"num_frames": asked_frames}
    expected_frames = asked_frames or 129
    with server.client() as c:
        r = c.post(
            SUBMIT_PATH,
            json={
                "prompt": "slow push in on the harbour",
                "image_url": f"{base}/{image}",
                "aspect_ratio": aspect_ratio,
                "seed": 7,
                **frames,
            },
        )
        assert r.status_code == 200, r.text
        sub = r.json()
        assert set(sub) == {"request_id", "status_url", "result_url", "cancel_url"}
        rid = sub["request_id"]
        assert sub["status_url"] == f"{server.base_url}/v1/requests/{rid}/status"
        assert sub["result_url"] == f"{server.base_url}/v1/requests/{rid}/result"
        assert sub["cancel_url"] == f"{server.base_url}/v1/requests/{rid}/cancel"

        seen: list[dict[str, Any]] = []
        final = wait_for(c, rid, {"completed", "failed", "cancelled"}, seen=seen)
        assert final["status"] == "completed", final
        for body in seen:
            assert body["request_id"] == rid
            if body["status"] == "in_queue":
                assert body["queue_position"] >= 0
            if body["status"] == "in_progress":
                assert 0.0 <= body["progress"] <= 1.0 and "step" in body
        progress = [b["progress"] for b in seen if b["status"] == "in_progress"]
        assert progress == sorted(progress)

        res = c.get(sub["result_url"]).json()
    assert res["status"] == "completed"
    meta = res["metadata"]
    assert meta["engine"] == "preview" and meta["model"]
    assert (meta["width"], meta["height"]) == size
    assert meta["num_frames"] == expected_frames and meta["fps"] == 24 and meta["seed"] == 7
    for key in ("created_at", "started_at", "finished_at"):
        assert res[key]

    video = httpx.get(res["output"]["video"])  # no header: the link itself is the credential
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert _decode(video.content, tmp_path) == (expected_frames, *size, 24.0)

    ranged = httpx.get(res["output"]["video"], headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == video.content[100:200]
    poster = httpx.get(res["poster"])
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"
    # The worker process's own heartbeat makes the server ready, naming its engine.
    ready = httpx.get(f"{server.base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["workers"][0]["engine"] == "preview"
