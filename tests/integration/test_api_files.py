"""Signed links (framecast.api.routes.files), in-process: a valid link serves its file (with
ranges) to anyone holding it; an expired, tampered or malformed one is refused in the error
shape, never with a 500."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from framecast.storage import signing

from .inprocess import assert_error, client_for, make_app, services_of

pytestmark = pytest.mark.anyio

VIDEO_KEY = "outputs/r1/video.mp4"
CONTENT = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    app = make_app(tmp_path_factory.mktemp("api"))
    storage = services_of(app).storage
    storage.put_bytes(VIDEO_KEY, CONTENT)
    storage.put_bytes("outputs/r1/poster.jpg", b"\xff\xd8 a poster")
    return app


@pytest.fixture
async def anyone(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """No API key: the link is the credential."""
    async with client_for(app, key=None) as c:
        yield c


def link(app: FastAPI, key: str = VIDEO_KEY, ttl: int = 3600) -> str:
    url, _ = services_of(app).storage.link(key, "http://testserver", ttl)
    return url


def signed(app: FastAPI, path: str, ttl: int, now: float | None = None) -> str:
    query, _ = signing.sign(services_of(app).settings.signing_key(), path, ttl, now=now)
    return f"{path}?{query}"


async def test_a_valid_link_serves_the_file_to_anyone(
    app: FastAPI, anyone: httpx.AsyncClient
) -> None:
    r = await anyone.get(link(app, ttl=600))
    assert r.status_code == 200 and r.content == CONTENT
    assert r.headers["content-type"] == "video/mp4"
    max_age = int(r.headers["cache-control"].removeprefix("private, max-age="))
    assert 598 <= max_age <= 600  # cached no longer than the link lives
    poster = await anyone.get(link(app, "outputs/r1/poster.jpg"))
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"
    # A key sent along changes nothing, even one that is not valid.
    r = await anyone.get(link(app), headers={"Authorization": "Bearer not-a-key"})
    assert r.status_code == 200


async def test_range_requests(app: FastAPI, anyone: httpx.AsyncClient) -> None:
    url = link(app)
    r = await anyone.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == CONTENT[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(CONTENT)}"
    r = await anyone.get(url, headers={"Range": f"bytes={len(CONTENT) + 10}-"})
    assert r.status_code == 416


async def test_an_expired_link_is_refused_and_says_what_to_do(
    app: FastAPI, anyone: httpx.AsyncClient
) -> None:
    url = signed(app, f"/v1/files/{VIDEO_KEY}", 60, now=time.time() - 3600)
    body = assert_error(await anyone.get(url), 403, "link_expired")
    assert "ask the result URL for a fresh one" in body["error"]["message"]


async def test_a_tampered_link_is_refused(app: FastAPI, anyone: httpx.AsyncClient) -> None:
    parts = urlsplit(link(app))
    query = dict(p.split("=", 1) for p in parts.query.split("&"))
    later = f"{parts.path}?expires={int(query['expires']) + 10}&signature={query['signature']}"
    other_file = f"/v1/files/outputs/r1/poster.jpg?{parts.query}"
    query["signature"] = query["signature"][:-1] + ("A" if query["signature"][-1] != "A" else "B")
    other_signature = f"{parts.path}?expires={query['expires']}&signature={query['signature']}"
    for url in (later, other_file, other_signature):
        assert_error(await anyone.get(url), 403, "invalid_signature")


async def test_a_link_signed_with_another_servers_key_is_refused(
    app: FastAPI, anyone: httpx.AsyncClient
) -> None:
    query, _ = signing.sign(b"another server's secret", f"/v1/files/{VIDEO_KEY}", 600)
    assert_error(await anyone.get(f"/v1/files/{VIDEO_KEY}?{query}"), 403, "invalid_signature")


async def test_a_valid_link_to_a_deleted_file_is_a_404(
    app: FastAPI, anyone: httpx.AsyncClient
) -> None:
    services_of(app).storage.put_bytes("outputs/r2/video.mp4", CONTENT)
    url = link(app, "outputs/r2/video.mp4")
    services_of(app).storage.delete("outputs/r2/video.mp4")
    body = assert_error(await anyone.get(url), 404, "file_not_found")
    assert body["error"]["message"] == "the file behind this link no longer exists"


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("expires=1&signature=%C3%A9", 403, "invalid_signature"),  # was a 500
        ("expires=1&signature=%FF", 403, "invalid_signature"),
        ("expires=1&signature=%00", 403, "invalid_signature"),
        ("expires=1&signature=", 403, "invalid_signature"),
        ("expires=-1&signature=abc", 403, "invalid_signature"),
        ("expires=99999999999999999999999999999999&signature=abc", 403, "invalid_signature"),
        ("expires=" + "9" * 5000 + "&signature=abc", 422, "invalid_input"),
        ("expires=1e9&signature=abc", 422, "invalid_input"),
        ("expires=abc&signature=abc", 422, "invalid_input"),
        ("expires=%C3%A9&signature=%C3%A9", 422, "invalid_input"),
        ("signature=abc", 422, "invalid_input"),
        ("expires=1", 422, "invalid_input"),
        ("", 422, "invalid_input"),
    ],
)
async def test_malformed_link_parameters_are_refused_not_500(
    anyone: httpx.AsyncClient, query: str, status: int, code: str
) -> None:
    r = await anyone.get(f"/v1/files/{VIDEO_KEY}?{query}")
    assert_error(r, status, code)


@pytest.mark.parametrize(
    ("key", "sent"),
    [
        ("outputs/../x", "outputs/%2E%2E/x"),  # was a 500 (the store's key check raised)
        ("outputs//video.mp4", "outputs//video.mp4"),
        ("outputs/r1/vid eo.mp4", "outputs/r1/vid%20eo.mp4"),
    ],
)
async def test_a_signed_link_to_a_key_no_store_writes_is_a_404(
    app: FastAPI, anyone: httpx.AsyncClient, key: str, sent: str
) -> None:
    query, _ = signing.sign(services_of(app).settings.signing_key(), f"/v1/files/{key}", 600)
    body = assert_error(await anyone.get(f"/v1/files/{sent}?{query}"), 404, "file_not_found")
    assert body["error"]["message"] == "the file behind this link does not exist"
