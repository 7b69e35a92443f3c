"""``?webhook=`` on submit, in-process: refused URLs are 422s in RunComfy's shape that name the
rule and never an internal address, nothing is queued for them; an accepted one is recorded
with the request and, once a real worker finishes it, delivered to a real receiver."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from framecast.admission.keys import KeyStore
from framecast.db import api_keys, request_webhooks, requests
from framecast.webhooks.dispatcher import build_dispatcher
from framecast.webhooks.targets import check_webhook_url, parse_webhook_url
from tests.integration.inprocess import (
    KEY,
    SMALL,
    SUBMIT,
    assert_error,
    client_for,
    make_app,
    run_worker,
    services_of,
)
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.anyio


BODY = {"prompt": "a slow push in", **SMALL[SUBMIT]}


@pytest.mark.parametrize(
    ("webhook", "code", "words"),
    [
        ("http://127.0.0.1:8000/hook", "webhook_url_refused", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "webhook_url_refused", "link-local"),
        ("http://localhost/hook", "webhook_url_refused", "loopback"),
        ("http://[::ffff:10.0.0.1]/hook", "webhook_url_refused", "IPv4-mapped private"),
        ("ftp://example.com/hook", "webhook_url_unsupported_scheme", "http or https"),
        ("http://user:pw@example.com/", "webhook_url_invalid", "user name or password"),
    ],
)
async def test_a_refused_webhook_url_is_a_422_and_queues_nothing(
    tmp_path: Path, webhook: str, code: str, words: str
) -> None:
    app = make_app(tmp_path)
    async with client_for(app) as client:
        r = await client.post(SUBMIT, params={"webhook": webhook}, json=BODY)
    body = assert_error(r, 422, code)
    message = body["error"]["message"]
    assert words in message
    assert body["detail"] == [{"loc": ["query", "webhook"], "msg": message, "type": code}]
    if webhook == "http://localhost/hook":
        assert "127.0.0.1" not in message and "::1" not in message  # what it resolved to
    with services_of(app).db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(requests)).scalar_one() == 0


async def test_intermediate_status_without_a_webhook_is_a_422(tmp_path: Path) -> None:
    async with client_for(make_app(tmp_path)) as client:
        r = await client.post(SUBMIT, params={"webhook_intermediate_status": "true"}, json=BODY)
    assert_error(r, 422, "webhook_url_missing")


async def test_a_key_made_before_webhooks_is_told_how_to_get_a_secret(tmp_path: Path) -> None:
    app = make_app(tmp_path, allow_private_urls=True)
    services = services_of(app)
    old = KeyStore(services.db).create("old")
    with services.db.begin() as conn:  # as migration 0005 left keys that existed before it
        conn.execute(update(api_keys).values(webhook_secret=None))
    async with client_for(app, old.secret) as client:
        r = await client.post(SUBMIT, params={"webhook": "http://127.0.0.1:9/h"}, json=BODY)
        body = assert_error(r, 422, "webhook_secret_missing")
        assert f"framecast keys rotate-webhook-secret {old.record.id}" in body["error_message"]
        services.keys.rotate_webhook_secret(old.record.id)
        r = await client.post(SUBMIT, params={"webhook": "http://127.0.0.1:9/h"}, json=BODY)
    assert r.status_code == 200, r.text


async def test_a_submitted_webhook_is_delivered_when_the_request_completes(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, allow_private_urls=True, link_ttl_seconds=600)
    services = services_of(app)
    ((_, secret),) = services.keys.env_webhook_secrets([KEY])
    receiver = Receiver(secret).start()
    try:
        async with client_for(app) as client:
            r = await client.post(
                SUBMIT,
                params={"webhook": receiver.url, "webhook_intermediate_status": "false"},
                json=BODY,
            )
            assert r.status_code == 200, r.text
            request_id = r.json()["request_id"]
            with services.db.connect() as conn:
                row = conn.execute(select(request_webhooks)).one()
            assert (row.request_id, row.url, row.base_url) == (
                request_id,
                receiver.url,
                "http://testserver",
            )
            await asyncio.to_thread(run_worker, app)
            dispatcher = build_dispatcher(services.settings, services.db)
            try:
                await dispatcher.dispatch_due()
            finally:
                await dispatcher.sender.aclose()
            (got,) = receiver.wait_for(1).values()
            assert got.payload["request_id"] == request_id
            assert got.payload["status"] == "completed"
            assert got.payload["metadata"]["engine"] == "preview"
            video = await client.get(got.payload["output"]["video"], headers={})
            assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    finally:
        receiver.stop()


async def test_a_non_ascii_webhook_is_stored_as_sent_and_delivered(tmp_path: Path) -> None:
    """Issue 21: such a URL was accepted, then every attempt died in the sender, uncounted."""
    app = make_app(tmp_path, allow_private_urls=True)
    services = services_of(app)
    ((_, secret),) = services.keys.env_webhook_secrets([KEY])
    receiver = Receiver(secret).start()
    sent = f"http://127.0.0.1:{receiver.port}/hooks/ünïcode/✓?name=Zoë&ok=%20#fragment"
    encoded = "/hooks/%C3%BCn%C3%AFcode/%E2%9C%93?name=Zo%C3%AB&ok=%20"
    try:
        async with client_for(app) as client:
            r = await client.post(SUBMIT, params={"webhook": sent}, json=BODY)
            assert r.status_code == 200, r.text
        with services.db.connect() as conn:
            stored = conn.execute(select(request_webhooks.c.url)).scalar_one()
        assert stored == f"http://127.0.0.1:{receiver.port}{encoded}"  # no fragment: never sent
        await asyncio.to_thread(run_worker, app)
        dispatcher = build_dispatcher(services.settings, services.db)
        try:
            (outcome,) = await dispatcher.dispatch_due()
        finally:
            await dispatcher.sender.aclose()
        assert outcome.result.ok, outcome.result.error
        (got,) = receiver.wait_for(1).values()
        assert got.path == encoded
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    ("webhook", "normalised"),
    [
        ("https://Bücher.Example/hook", "https://xn--bcher-kva.example/hook"),
        ("HTTPS://example.com:443", "https://example.com/"),
        ("http://example.com:8080/a%2Fb?x=1", "http://example.com:8080/a%2Fb?x=1"),
        ("http://[2001:DB8::1]:80/ä", "http://[2001:db8::1]/%C3%A4"),
    ],
)
async def test_webhook_urls_are_normalised_at_submit(webhook: str, normalised: str) -> None:
    """The IDN host cannot resolve here: the check is given an answer, as DNS would give."""

    async def public(host: str, port: int) -> list[str]:
        return ["2001:db8::1"] if host == "2001:db8::1" else ["93.184.215.14"]

    checked = await check_webhook_url(webhook, allow_private=True, resolver=public)
    assert checked.url == normalised
    assert parse_webhook_url(checked.url) == checked  # normalising again changes nothing


async def test_a_host_that_is_no_name_is_refused(tmp_path: Path) -> None:
    async with client_for(make_app(tmp_path)) as client:
        r = await client.post(SUBMIT, params={"webhook": "http://a..b/hook"}, json=BODY)
    assert_error(r, 422, "webhook_url_invalid")
