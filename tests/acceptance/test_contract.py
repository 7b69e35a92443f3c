"""The HTTP contract, end to end: a real server process, a real worker, real MP4 files.

Only what needs the processes is here; each route's contract (keys, 404s, 409s, 422s, signed
links, the error shape) is tested in-process in tests/integration/test_api_*.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from .conftest import Server, wait_for


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


@dataclass(frozen=True)
class Model:
    id: str
    image_field: str
    """RunComfy's name for the image: image_url for HunyuanVideo-I2V, image for 1.5."""
    frames: int
    """Its default num_frames."""
    size: tuple[int, int]
    """Its default size: 16:9 at its default resolution."""
    portrait: dict[str, str]
    """The fields of a 9:16 request (1.5's at 720p: test_models.py asks for its 480p)."""
    portrait_size: tuple[int, int]

    @property
    def path(self) -> str:
        return f"/v1/models/{self.id}"


I2V = Model(
    "tencent/hunyuan/image-to-video", "image_url", 129, (1248, 704),
    {"aspect_ratio": "9:16"}, (704, 1248),
)  # fmt: skip
I2V_15 = Model(
    "tencent/hunyuan-video-v1.5/image-to-video", "image", 121, (848, 480),
    {"aspect_ratio": "9:16", "resolution": "720p"}, (720, 1280),
)  # fmt: skip
MODELS = [pytest.param(I2V, id="i2v"), pytest.param(I2V_15, id="1.5")]


@pytest.mark.parametrize("model", MODELS)
# The first sends only the prompt and the image: the model's defaults (RunComfy's 129 frames
# at 720p for I2V; 1.5's official 121 frames at 480p). The second asks for 9 frames, which
# keeps the portrait video (and its encoding) short.
@pytest.mark.parametrize("portrait", [False, True], ids=["defaults", "portrait"])
def test_submit_poll_and_download_a_real_video(
    server: Server, image_server: tuple[str, Path], tmp_path: Path, model: Model, portrait: bool
) -> None:
    fields: dict[str, Any] = {**model.portrait, "num_frames": 9} if portrait else {}
    image = "portrait.png" if portrait else "harbour.jpg"
    base, _ = image_server
    expected_frames = fields.get("num_frames", model.frames)
    expected_size = model.portrait_size if portrait else model.size
    with server.client() as c:
        r = c.post(
            model.path,
            json={
                "prompt": "slow push in on the harbour",
                model.image_field: f"{base}/{image}",
                "seed": 7,
                **fields,
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
    assert meta["engine"] == "preview" and meta["model"] and meta["model_id"] == model.id
    assert (meta["width"], meta["height"]) == expected_size
    assert meta["num_frames"] == expected_frames and meta["fps"] == 24 and meta["seed"] == 7
    for key in ("created_at", "started_at", "finished_at"):
        assert res[key]

    video = httpx.get(res["output"]["video"])  # no header: the link itself is the credential
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert _decode(video.content, tmp_path) == (expected_frames, *expected_size, 24.0)

    ranged = httpx.get(res["output"]["video"], headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == video.content[100:200]
    poster = httpx.get(res["poster"])
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"
    # The worker process's own heartbeat makes the server ready, naming its engine.
    ready = httpx.get(f"{server.base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["workers"][0]["engine"] == "preview"


@pytest.mark.parametrize("model", MODELS)
def test_a_running_request_is_cancelled_through_the_server(
    server: Server, image_server: tuple[str, Path], model: Model
) -> None:
    # The model's longest video at its largest size: seconds of work, so the cancel, sent as
    # soon as the worker has it, lands long before the end (and ends it early).
    base, _ = image_server
    with server.client() as c:
        card = next(m for m in c.get("/v1/models").json()["models"] if m["id"] == model.id)
        longest = card["input_schema"]["properties"]["num_frames"]["maximum"]
        largest = max(card["sizes"], key=lambda s: s["width"] * s["height"])
        r = c.post(
            model.path,
            json={
                "prompt": "slow push in on the harbour",
                model.image_field: f"{base}/harbour.jpg",
                "aspect_ratio": largest["aspect_ratio"],
                "resolution": largest["resolution"],
                "num_frames": longest,
            },
        )
        assert r.status_code == 200, r.text
        rid = r.json()["request_id"]
        wait_for(c, rid, {"in_progress", "completed", "failed", "cancelled"})
        cancel = c.post(r.json()["cancel_url"])
        assert cancel.status_code == 202, cancel.text
        assert cancel.json()["outcome"] == "cancel_requested"
        final = wait_for(c, rid, {"completed", "failed", "cancelled"})
        assert final["status"] == "cancelled", final
        result = c.get(f"/v1/requests/{rid}/result").json()
    assert result["status"] == "cancelled" and "output" not in result
