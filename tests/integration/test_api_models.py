"""Submitting and the model cards (framecast.api.routes.models), in-process: what a submit
answers, the 422s that name the field, the image checks at submit, unknown models, and
``GET /v1/models``, which the playground builds its form from."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from framecast.states import Status

from .inprocess import (
    SUBMIT,
    SUBMIT_15,
    assert_error,
    client_for,
    data_uri,
    make_app,
    png,
    services_of,
    submit,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """One app for the module: each test's requests are its own, and creating and migrating
    a fresh one per test would take most of the module's time."""
    return make_app(tmp_path_factory.mktemp("api"), max_image_bytes=1024 * 1024)


# --- a good submit ------------------------------------------------------------------------------


async def test_a_submit_answers_its_id_and_urls_and_queues_the_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # With a live worker for the model: RunComfy's fields, and no note that none serves it.
    services_of(app).registry.register("w-submit", "host", 1, serves=None)
    r = await client.post(SUBMIT, json={"prompt": "p", "image_url": data_uri(png()), "seed": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"request_id", "status_url", "result_url", "cancel_url"}
    root = f"http://testserver/v1/requests/{body['request_id']}"
    assert body["status_url"] == f"{root}/status"
    assert body["result_url"] == f"{root}/result"
    assert body["cancel_url"] == f"{root}/cancel"

    services = services_of(app)
    job = services.jobs.get(body["request_id"])
    assert job is not None and job.status is Status.IN_QUEUE
    assert job.model == "tencent/hunyuan/image-to-video"
    assert job.input["seed"] == 7 and job.input["prompt"] == "p"
    # The image is stored at submit, as sent: the worker never fetches it again.
    assert job.image_key == f"inputs/{job.id}/image.png"
    assert services.storage.get_bytes(job.image_key) == png()


async def test_the_urls_use_the_public_base_url_when_it_is_set(tmp_path: Path) -> None:
    app = make_app(tmp_path, public_base_url="https://videos.example.com/api/")
    async with client_for(app) as c:
        r = await c.post(SUBMIT, json={"prompt": "p", "image_url": data_uri(png())})
    rid = r.json()["request_id"]
    assert r.json()["status_url"] == f"https://videos.example.com/api/v1/requests/{rid}/status"


async def test_hunyuan_1_5_takes_runcomfys_image_field(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rid = await submit(client, SUBMIT_15, aspect_ratio="9:16")
    job = services_of(app).jobs.get(rid)
    assert job is not None and job.model == "tencent/hunyuan-video-v1.5/image-to-video"
    assert job.input["aspect_ratio"] == "9:16"


# --- 422: the body -----------------------------------------------------------------------------


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
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str, needle: str
) -> None:
    r = await client.post(SUBMIT, json=body)
    error = assert_error(r, 422, "invalid_input")["error"]
    assert field in error["message"] and needle in error["message"], error
    assert [d["field"] for d in error["details"]] == [field]


@pytest.mark.parametrize(
    "content", [b"{not json", b"", b"[1, 2]", b'"a string"', b"null"], ids=repr
)
async def test_a_body_that_is_not_a_json_object_is_a_clear_422(
    client: httpx.AsyncClient, content: bytes
) -> None:
    r = await client.post(SUBMIT, content=content, headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_input")


@pytest.mark.parametrize(
    ("path", "body", "field", "owner"),
    [
        (SUBMIT_15, {"prompt": "p", "image_url": "data:,"}, "image_url", SUBMIT),
        (SUBMIT, {"prompt": "p", "image": "data:,"}, "image", SUBMIT_15),
    ],
)
async def test_one_models_field_sent_to_another_is_a_422_that_says_which(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str, owner: str
) -> None:
    r = await client.post(path, json=body)
    message = assert_error(r, 422, "invalid_input")["error"]["message"]
    model = owner.removeprefix("/v1/models/")
    assert f"unknown field '{field}' (it is a field of {model}, not of this model)" in message


async def test_an_unknown_lora_is_a_422_listing_the_ones_there(tmp_path: Path) -> None:
    loras = tmp_path / "loras"
    loras.mkdir()
    (loras / "film-grain.safetensors").write_bytes(b"not read at submit")
    app = make_app(tmp_path, lora_dir=loras)
    async with client_for(app) as c:
        body = {"prompt": "p", "image_url": data_uri(png()), "loras": [{"path": "nope"}]}
        r = await c.post(SUBMIT, json=body)
        error = assert_error(r, 422, "invalid_input")["error"]
        assert error["message"] == "loras.0.path: no LoRA named 'nope'; available: film-grain"
        body["loras"] = [{"path": "film-grain", "scale": 0.5}]
        assert (await c.post(SUBMIT, json=body)).status_code == 200
    # Refused before its image was fetched or stored; the second one was.
    assert len(list((tmp_path / "data").rglob("inputs/*/image.png"))) == 1


# --- 422: the image, checked at submit ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/harbour.jpg",
        "http://localhost:8000/harbour.jpg",
        "http://2130706433:8000/harbour.jpg",
        "http://[::ffff:127.0.0.1]:8000/harbour.jpg",
        "http://[::1]:8000/harbour.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.png",
        "http://192.168.1.1/x.png",
        "http://100.64.0.1/x.png",
    ],
)
async def test_private_addresses_are_refused_by_default(
    client: httpx.AsyncClient, url: str
) -> None:
    r = await client.post(SUBMIT, json={"prompt": "p", "image_url": url})
    error = assert_error(r, 422, "image_url_refused")["error"]
    assert "FRAMECAST_ALLOW_PRIVATE_URLS" in error["message"]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "javascript:alert(1)"]
)
async def test_other_schemes_are_refused(client: httpx.AsyncClient, url: str) -> None:
    r = await client.post(SUBMIT, json={"prompt": "p", "image_url": url})
    assert_error(r, 422, "image_url_unsupported_scheme")


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 200), (10, 200, 90)).save(buf, "JPEG")
    return buf.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (data_uri(b"hello, I am text", "text/plain"), "image_not_decodable"),
        (data_uri(_jpeg()[:400], "image/jpeg"), "image_truncated"),
        (data_uri(png()[:60]), "image_truncated"),
        (data_uri(b"\0" * (1024 * 1024 + 10)), "image_too_large"),
        (data_uri(_huge_png_header(100_000, 100_000)), "image_too_many_pixels"),
    ],
    ids=["text", "truncated-jpeg", "truncated-png", "too-large", "too-many-pixels"],
)
async def test_bad_images_are_refused_at_submit_and_nothing_is_queued(
    app: FastAPI, client: httpx.AsyncClient, url: str, code: str
) -> None:
    inputs = Path(services_of(app).settings.media_dir) / "inputs"
    stored = set(inputs.iterdir()) if inputs.exists() else set()
    r = await client.post(SUBMIT, json={"prompt": "p", "image_url": url})
    assert_error(r, 422, code)
    assert (set(inputs.iterdir()) if inputs.exists() else set()) == stored


# --- unknown models ----------------------------------------------------------------------------


async def test_an_unknown_model_is_a_404_naming_the_served_ones(client: httpx.AsyncClient) -> None:
    for path in ("/v1/models/acme/other-model", "/v1/models/tencent/hunyuan"):
        r = await client.post(path, json={})
        message = assert_error(r, 404, "model_not_found")["error"]["message"]
        assert message.startswith(
            f"this server does not serve '{path.removeprefix('/v1/models/')}'"
        )
        assert message.endswith(
            "it serves 'tencent/hunyuan/image-to-video', "
            "'tencent/hunyuan-video-v1.5/image-to-video'"
        )


async def test_a_get_on_a_submit_route_is_the_models_card(client: httpx.AsyncClient) -> None:
    # RunComfy's catalog: GET /v1/models/{model_id} answers the card GET /v1/models lists.
    for path, image_field in ((SUBMIT, "image_url"), (SUBMIT_15, "image")):
        r = await client.get(path)
        assert r.status_code == 200, r.text
        card = r.json()
        assert card["id"] == path.removeprefix("/v1/models/")
        assert card["input_schema"]["required"] == ["prompt", image_field]
        assert "video" in card["output_schema"]["output"]["properties"]
        listed = (await client.get("/v1/models")).json()["models"]
        assert card in listed
    assert_error(await client.get("/v1/models/tencent/hunyuan"), 404, "model_not_found")
    assert_error(await client.put(SUBMIT), 405, "method_not_allowed")


async def test_the_catalog_filters_by_search_and_pages_by_limit_and_offset(
    client: httpx.AsyncClient,
) -> None:
    async def ids(query: str) -> tuple[list[str], int]:
        r = await client.get(f"/v1/models?{query}")
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["models"]], r.json()["total"]

    v1, v15 = SUBMIT.removeprefix("/v1/models/"), SUBMIT_15.removeprefix("/v1/models/")
    assert await ids("") == ([v1, v15], 2)
    assert await ids("search=V1.5") == ([v15], 1)
    assert await ids("search=8.3B") == ([v15], 1)  # the description counts too
    assert await ids("search=nothing-like-it") == ([], 0)
    assert await ids("limit=1") == ([v1], 2)
    assert await ids("limit=1&offset=1") == ([v15], 2)
    assert (await client.get("/v1/models?limit=0")).status_code == 422


# --- GET /v1/models ----------------------------------------------------------------------------


async def test_the_model_cards(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200, r.text
    models = r.json()["models"]
    assert [m["id"] for m in models] == [
        "tencent/hunyuan/image-to-video",
        "tencent/hunyuan-video-v1.5/image-to-video",
    ]
    card = models[0]
    schema = card["input_schema"]
    assert schema["required"] == ["prompt", "image_url"]
    assert schema["properties"]["aspect_ratio"]["enum"] == ["16:9", "9:16"]
    assert schema["properties"]["seed"]["default"] == 99271155
    assert "1248x704" in schema["properties"]["resolution"]["description"]
    assert "video" in card["output_schema"]["output"]["properties"]
    sizes = {(s["aspect_ratio"], s["resolution"]): (s["width"], s["height"]) for s in card["sizes"]}
    assert sizes[("16:9", "720p")] == (1248, 704)
    assert sizes[("9:16", "360p")] == (352, 608)
    assert card["loras"] == []
    card_15 = models[1]
    assert card_15["input_schema"]["required"] == ["prompt", "image"]
    sizes_15 = {
        (s["aspect_ratio"], s["resolution"]): (s["width"], s["height"]) for s in card_15["sizes"]
    }
    assert sizes_15[("9:16", "480p")] == (480, 848)


async def test_the_cards_list_a_lora_as_soon_as_its_file_is_there(tmp_path: Path) -> None:
    loras = tmp_path / "loras"
    loras.mkdir()
    async with client_for(make_app(tmp_path, lora_dir=loras)) as c:
        assert (await c.get("/v1/models")).json()["models"][0]["loras"] == []
        (loras / "film-grain.safetensors").write_bytes(b"x")
        (loras / "notes.txt").write_text("not a LoRA")
        assert (await c.get("/v1/models")).json()["models"][0]["loras"] == ["film-grain"]
