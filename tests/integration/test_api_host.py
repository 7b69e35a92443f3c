"""The ``Host`` header and the URLs handed out, in-process: with FRAMECAST_PUBLIC_BASE_URL set,
nothing a client puts in ``Host`` reaches ``status_url``, the signed file links or a webhook's
payload; without it, a ``Host`` that is no host and port is a 400, not echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from framecast.db import request_webhooks
from framecast.settings import Settings

from .inprocess import SMALL, SUBMIT, assert_error, client_for, make_app, run_worker

pytestmark = pytest.mark.anyio

BODY = {"prompt": "a slow push in", **SMALL[SUBMIT]}
PUBLIC = "https://videos.example.com/api"
HOSTILE = "evil.example"


async def test_with_a_public_url_set_no_host_header_reaches_a_link(tmp_path: Path) -> None:
    app = make_app(tmp_path, public_base_url=PUBLIC + "/", allow_private_urls=True)
    evil = {"Host": HOSTILE}
    async with client_for(app) as client:
        r = await client.post(
            SUBMIT, json=BODY, headers=evil, params={"webhook": "http://127.0.0.1:9/hook"}
        )
        assert r.status_code == 200, r.text
        request_id = r.json()["request_id"]
        run_worker(app)
        answers = [
            r,
            await client.get(f"/v1/requests/{request_id}/status", headers=evil),
            await client.get(f"/v1/requests/{request_id}/result", headers=evil),
            await client.get("/v1/requests", headers=evil),
            # A Host that is no host at all is not even looked at.
            await client.get(f"/v1/requests/{request_id}/result", headers={"Host": "a@b/c?"}),
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert HOSTILE not in answer.text and "a@b" not in answer.text
    assert answers[0].json()["status_url"] == f"{PUBLIC}/v1/requests/{request_id}/status"
    assert answers[1].json()["result_url"] == f"{PUBLIC}/v1/requests/{request_id}/result"
    result = answers[2].json()
    assert result["output"]["video"].startswith(f"{PUBLIC}/v1/files/outputs/{request_id}/")
    assert result["poster"].startswith(f"{PUBLIC}/v1/files/")
    app_db = app.state.services.db
    with app_db.connect() as conn:  # the root of the webhook payload's links
        assert conn.execute(select(request_webhooks.c.base_url)).scalar_one() == PUBLIC


async def test_without_one_a_host_and_port_are_used(tmp_path: Path) -> None:
    async with client_for(make_app(tmp_path)) as client:
        for host in ("api.example:8443", "10.0.0.7", "[2001:db8::1]:8000", "localhost"):
            r = await client.post(SUBMIT, json=BODY, headers={"Host": host})
            assert r.status_code == 200, r.text
            assert r.json()["status_url"].startswith(f"http://{host}/v1/requests/")


@pytest.mark.parametrize(
    "host",
    [
        "evil.example/phish?",  # would make status_url http://evil.example/phish?/v1/...
        "user@evil.example",
        "evil.example#",
        "evil.example:80:80",
        "[::1",
        "evil.example:port",
        "-",
        "\u00e9vil.example",
    ],
)
async def test_without_one_a_host_that_is_no_host_is_a_400_and_not_echoed(
    tmp_path: Path, host: str
) -> None:
    app = make_app(tmp_path)
    async with client_for(app) as client:
        for answer in (
            # As bytes: a client may send any (Starlette reads them as Latin-1).
            await client.post(SUBMIT, json=BODY, headers={b"Host": host.encode("latin-1")}),
            await client.get("/v1/requests", headers={b"Host": host.encode("latin-1")}),
        ):
            body = assert_error(answer, 400, "invalid_host")
            assert host not in answer.text
            assert "FRAMECAST_PUBLIC_BASE_URL" in body["error"]["message"]


async def test_routes_that_hand_out_no_url_do_not_look_at_host(tmp_path: Path) -> None:
    """A load balancer's health probe, say, may send any Host."""
    async with client_for(make_app(tmp_path)) as client:
        assert (await client.get("/healthz", headers={"Host": "a b"})).status_code == 200


@pytest.mark.parametrize(
    "value", ["api.example.com", "ftp://api.example.com", "https://", "https://h/?q=1"]
)
def test_the_public_url_must_be_an_http_url_of_a_host(value: str) -> None:
    with pytest.raises(ValueError, match="public_base_url"):
        Settings(public_base_url=value)
