"""LoRA names over HTTP: /v1/models lists FRAMECAST_LORA_DIR, a submit naming another is a 422
that lists what there is, and a file added later is listed and accepted at once.

The API never loads a LoRA, so the files here need not be real ones (the preview engine runs
the requests)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import SUBMIT_PATH, Server, png_bytes, wait_for

IMAGE = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
MODEL_15 = "tencent/hunyuan-video-v1.5/image-to-video"


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    for name in ("watercolor", "film-grain"):
        (folder / f"{name}.safetensors").write_bytes(b"{}")
    return folder


@pytest.fixture(scope="module")
def server(make_server: Callable[..., Server], lora_dir: Path) -> Server:
    s = make_server(lora_dir=lora_dir)
    s.start()
    return s


def test_models_lists_the_loras_and_a_file_added_later(server: Server, lora_dir: Path) -> None:
    with server.client() as c:
        cards = {m["id"]: m for m in c.get("/v1/models").json()["models"]}
        card = cards["tencent/hunyuan/image-to-video"]
        # Both models take LoRAs from the same folder.
        for model in ("tencent/hunyuan/image-to-video", MODEL_15):
            assert cards[model]["loras"] == ["film-grain", "watercolor"]
            assert cards[model]["input_schema"]["properties"]["loras"]["maxItems"] == 3
        (lora_dir / "neon.safetensors").write_bytes(b"{}")
        try:
            card = c.get("/v1/models").json()["models"][0]
            assert card["loras"] == ["film-grain", "neon", "watercolor"]
            r = c.post(
                SUBMIT_PATH, json={"prompt": "p", "image_url": IMAGE, "loras": [{"path": "neon"}]}
            )
            assert r.status_code == 200, r.text
        finally:
            (lora_dir / "neon.safetensors").unlink()


@pytest.mark.parametrize(
    ("path", "image_field"), [(SUBMIT_PATH, "image_url"), (f"/v1/models/{MODEL_15}", "image")]
)
def test_an_unknown_lora_is_a_422_naming_the_field_and_the_available_ones(
    server: Server, path: str, image_field: str
) -> None:
    body = {
        "prompt": "p",
        image_field: IMAGE,
        "loras": [{"path": "watercolor", "scale": 0.5}, {"path": "oil-paint", "scale": 1}],
    }
    with server.client() as c:
        r = c.post(path, json=body)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_input"
    assert "no LoRA named 'oil-paint'" in error["message"]
    (detail,) = error["details"]
    assert detail["field"] == "loras.1.path"
    assert detail["allowed"] == ["film-grain", "watercolor"]


@pytest.mark.parametrize(
    ("loras", "field"),
    [
        ([{"path": "watercolor", "scale": 9}], "loras.0.scale"),
        ([{"path": "watercolor", "weight": 1}], "loras.0.weight"),
        ([{"path": "watercolor"}, {"path": "watercolor"}], "loras"),
        ([{"path": "watercolor"}] * 4, "loras"),
    ],
)
def test_lora_inputs_are_validated(server: Server, loras: list[object], field: str) -> None:
    with server.client() as c:
        r = c.post(SUBMIT_PATH, json={"prompt": "p", "image_url": IMAGE, "loras": loras})
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == [field]


def test_a_request_with_known_loras_runs(server: Server) -> None:
    loras = [{"path": "watercolor", "scale": 0.8}, {"path": "film-grain", "scale": -0.5}]
    with server.client() as c:
        r = c.post(
            SUBMIT_PATH,
            json={"prompt": "p", "image_url": IMAGE, "num_frames": 5, "loras": loras},
        )
        assert r.status_code == 200, r.text
        final = wait_for(c, r.json()["request_id"], {"completed", "failed"})
    assert final["status"] == "completed", final


def test_generate_takes_lora_flags_and_refuses_an_unknown_name(
    lora_dir: Path, tmp_path: Path
) -> None:
    from framecast.cli.model_flags import lora_flag

    assert lora_flag("watercolor:0.5") == {"path": "watercolor", "scale": 0.5}
    assert lora_flag("watercolor") == {"path": "watercolor"}
    assert lora_flag("odd:name") == {"path": "odd:name"}
    sample = Path(__file__).parents[2] / "src/framecast/assets/sample.jpg"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "framecast", "generate", str(sample), "--prompt", "p"),
            *("--engine", "hunyuan", "--hunyuan-model", "tiny-random"),
            *("--lora", "watercolor:0.5", "--lora", "oil-paint", "--lora-dir", str(lora_dir)),
        ],
        env={**os.environ, "FRAMECAST_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "loras.1.path: no LoRA named 'oil-paint'; available: film-grain, watercolor" in (
        proc.stderr
    )
