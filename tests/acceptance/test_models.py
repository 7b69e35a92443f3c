"""Every model through a real server (preview engine): HunyuanVideo 1.5 with RunComfy's field
names, and a model declared in one module outside framecast (a plugin the server process loads).
One model's fields sent to another: tests/integration/test_api_models.py."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest

from .conftest import Server, wait_for

ROOT = Path(__file__).parents[2]
I2V_15 = "/v1/models/tencent/hunyuan-video-v1.5/image-to-video"
SAMPLE = ROOT / "src/framecast/assets/sample.jpg"
DATA_URI = "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()


@pytest.fixture(scope="module")
def server(make_server: Callable[..., Server]) -> Server:
    s = make_server(model_plugins="acme_model")
    s.env["PYTHONPATH"] = str(ROOT / "tests/plugins")
    s.start()
    return s


def _video(c: Any, rid: str, tmp_path: Path) -> tuple[int, int, int, dict[str, Any]]:
    final = wait_for(c, rid, {"completed", "failed", "cancelled"})
    assert final["status"] == "completed", final
    result = c.get(f"/v1/requests/{rid}/result").json()
    path = tmp_path / f"{rid}.mp4"
    path.write_bytes(c.get(result["output"]["video"]).content)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.width, stream.height, frames, result["metadata"]


def test_hunyuan_1_5_takes_runcomfys_image_field_and_makes_its_own_sizes(
    server: Server, tmp_path: Path
) -> None:
    with server.client() as c:
        card = next(
            m
            for m in c.get("/v1/models").json()["models"]
            if m["id"].endswith("v1.5/image-to-video")
        )
        assert card["input_schema"]["required"] == ["prompt", "image"]
        r = c.post(
            I2V_15,
            json={
                "prompt": "a slow pan",
                "image": DATA_URI,
                "num_frames": 9,
                "aspect_ratio": "9:16",
            },
        )
        assert r.status_code == 200, r.text
        width, height, frames, meta = _video(c, r.json()["request_id"], tmp_path)
    sizes = {(s["aspect_ratio"], s["resolution"]): (s["width"], s["height"]) for s in card["sizes"]}
    assert (width, height) == sizes[("9:16", "480p")] == (480, 848)
    assert frames == 9
    assert meta["model_id"] == "tencent/hunyuan-video-v1.5/image-to-video"
    assert meta["engine"] == "preview"


def test_a_model_declared_in_one_module_gets_a_route_a_card_and_the_preview_engine(
    server: Server, tmp_path: Path
) -> None:
    with server.client() as c:
        ids = [m["id"] for m in c.get("/v1/models").json()["models"]]
        assert ids[-1] == "acme/pan/image-to-video"
        assert "/v1/models/acme/pan/image-to-video" in c.get("/openapi.json").json()["paths"]
        r = c.post(
            "/v1/models/acme/pan/image-to-video",
            json={"prompt": "p", "picture": DATA_URI, "aspect_ratio": "2:1"},
        )
        assert r.status_code == 200, r.text
        width, height, frames, meta = _video(c, r.json()["request_id"], tmp_path)
        assert c.get("/readyz").json()["unserved"] == []
    assert (width, height, frames) == (512, 256, 9)
    assert meta["fps"] == 12 and meta["model_id"] == "acme/pan/image-to-video"
