"""The HTTP contract, end to end: a real server process, a real worker, real MP4 files."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import httpx
import pytest

from framecast.storage import signing

from .conftest import KEY_A, KEY_B, SUBMIT_PATH, Server, png_bytes, wait_for


@pytest.fixture(scope="module")
def server(make_server: Callable[..., Server]) -> Server:
    s = make_server(allow_private_urls="true")
    s.start()
    return s


def _decode(data: bytes, tmp_path: Path) -> tuple[int, int, int, float]:
    path = tmp_path / "out.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height, float(stream.average_rate)


@pytest.mark.parametrize(
    ("aspect_ratio", "image", "size"),
    [("16:9", "harbour.jpg", (1248, 704)), ("9:16", "portrait.png", (704, 1248))],
)
def test_submit_poll_and_download_a_real_video(
    server: Server,
    image_server: tuple[str, Path],
    tmp_path: Path,
    aspect_ratio: str,
    image: str,
    size: tuple[int, int],
) -> None:
    base, _ = image_server
    with server.client() as c:
        r = c.post(
            SUBMIT_PATH,
            json={
                "prompt": "slow push in on the harbour",
                "image_url": f"{base}/{image}",
                "aspect_ratio": aspect_ratio,
                "seed": 7,
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
    assert meta["num_frames"] == 129 and meta["fps"] == 24 and meta["seed"] == 7
    for key in ("created_at", "started_at", "finished_at"):
        assert res[key]

    video = httpx.get(res["output"]["video"])  # no header: the link itself is the credential
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert _decode(video.content, tmp_path) == (129, *size, 24.0)

    ranged = httpx.get(res["output"]["video"], headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == video.content[100:200]
    poster = httpx.get(res["poster"])
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"


def test_each_result_call_gives_a_fresh_link_and_tampered_or_expired_links_are_refused(
    server: Server, tmp_path: Path
) -> None:
    data = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    with server.client() as c:
        rid = c.post(SUBMIT_PATH, json={"prompt": "p", "image_url": data}).json()["request_id"]
        wait_for(c, rid, {"completed"})
        first = c.get(f"/v1/requests/{rid}/result").json()["output"]["video"]
        time.sleep(1.1)
        second = c.get(f"/v1/requests/{rid}/result").json()["output"]["video"]
    assert first != second
    assert httpx.get(first).status_code == 200 and httpx.get(second).status_code == 200

    parts = urlsplit(first)
    q = parse_qs(parts.query)
    tampered = f"{server.base_url}{parts.path}?expires={int(q['expires'][0]) + 10}&signature={q['signature'][0]}"
    r = httpx.get(tampered)
    assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_signature"
    secret = (server.data_dir / "secret_key").read_text().strip().encode()
    query, _ = signing.sign(secret, parts.path, 60, now=time.time() - 3600)
    r = httpx.get(f"{server.base_url}{parts.path}?{query}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "link_expired"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBMIT_PATH),
        ("GET", "/v1/requests/x/status"),
        ("GET", "/v1/requests/x/result"),
        ("POST", "/v1/requests/x/cancel"),
        ("GET", "/v1/models"),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_every_route_needs_a_valid_key(
    server: Server, method: str, path: str, key: str | None
) -> None:
    with server.client(key) as c:
        r = c.request(method, path, json={"prompt": "p", "image_url": "data:,"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized" and r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"image_url": "data:,"}, "prompt", "prompt is required"),
        ({"prompt": "p"}, "image_url", "image_url is required"),
        ({"prompt": "   ", "image_url": "data:,"}, "prompt", "blank"),
        (
            {"prompt": "p", "image_url": "data:,", "colour": "red"},
            "colour",
            "allowed fields: prompt, image_url",
        ),
        ({"prompt": "p", "image_url": "data:,", "seed": "12"}, "seed", "integer"),
        ({"prompt": "p", "image_url": "data:,", "seed": -1}, "seed", "greater than or equal to 0"),
        ({"prompt": 5, "image_url": "data:,"}, "prompt", "string"),
        (
            {"prompt": "p", "image_url": "data:,", "aspect_ratio": "4:3"},
            "aspect_ratio",
            "'16:9' or '9:16'",
        ),
        ({"prompt": "p", "image_url": "data:,", "resolution": "1080p"}, "resolution", "'720p'"),
        ({"prompt": "p", "image_url": "data:,", "num_frames": 64}, "num_frames", "129"),
        ({"prompt": "p", "image_url": "data:,", "num_frames": 129.0}, "num_frames", "integer"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    server: Server, body: dict[str, Any], field: str, needle: str
) -> None:
    with server.client() as c:
        r = c.post(SUBMIT_PATH, json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_input"
    assert field in err["message"] and needle in err["message"], err


def test_body_that_is_not_json_is_a_clear_422(server: Server) -> None:
    with server.client() as c:
        r = c.post(SUBMIT_PATH, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def test_unknown_ids_models_and_routes_use_the_error_shape(server: Server) -> None:
    with server.client() as c:
        for path in ("/v1/requests/nope/status", "/v1/requests/nope/result"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "request_not_found"
        r = c.post("/v1/requests/nope/cancel")
        assert r.status_code == 404 and r.json()["error"]["code"] == "request_not_found"
        r = c.post("/v1/models/acme/other-model", json={})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = c.get("/v2/nothing")
        assert r.status_code == 404 and set(r.json()["error"]) >= {"code", "message"}
        r = c.delete("/v1/requests/x/status")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_another_keys_request_is_invisible(server: Server) -> None:
    data = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    with server.client(KEY_A) as alice, server.client(KEY_B) as bob:
        rid = alice.post(SUBMIT_PATH, json={"prompt": "p", "image_url": data}).json()["request_id"]
        for method, path in (("GET", "status"), ("GET", "result"), ("POST", "cancel")):
            r = bob.request(method, f"/v1/requests/{rid}/{path}")
            assert r.status_code == 404, (path, r.text)
            assert r.json()["error"]["code"] == "request_not_found"
        assert alice.get(f"/v1/requests/{rid}/status").json()["status"] != "cancelled"


def test_models_openapi_docs_and_health(server: Server) -> None:
    with server.client() as c:
        models = c.get("/v1/models").json()["models"]
        assert [m["id"] for m in models] == [
            "tencent/hunyuan/image-to-video",
            "tencent/hunyuan-video-v1.5/image-to-video",
        ]
        schema = models[0]["input_schema"]
        assert schema["required"] == ["prompt", "image_url"]
        assert schema["properties"]["aspect_ratio"]["enum"] == ["16:9", "9:16"]
        assert schema["properties"]["seed"]["default"] == 99271155
        assert "video" in models[0]["output_schema"]["output"]["properties"]
        sizes = {
            (s["aspect_ratio"], s["resolution"]): (s["width"], s["height"])
            for s in models[0]["sizes"]
        }
        assert sizes[("16:9", "720p")] == (1248, 704)
        assert sizes[("9:16", "360p")] == (352, 608)
        assert "1248x704" in schema["properties"]["resolution"]["description"]
        assert SUBMIT_PATH in c.get("/openapi.json").json()["paths"]
        assert "swagger" in c.get("/docs").text.lower()
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["workers"][0]["engine"] == "preview"
