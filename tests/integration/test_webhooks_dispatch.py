"""The dispatcher against real HTTP receivers on loopback: signed per Standard Webhooks (checked
by the ``standardwebhooks`` package), retried until a receiver that was down comes back, each
delivery accepted exactly once, redirects and slow receivers treated as failures, the address
checked again at delivery, and several dispatchers sharing one outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from standardwebhooks import Webhook

from framecast.admission.keys import KeyStore
from framecast.client import verify_webhook
from framecast.db import create_db_engine, migrate, utcnow, webhook_deliveries
from framecast.queue.jobs import JobStore
from framecast.queue.results import VideoResult
from framecast.settings import Settings
from framecast.webhooks.dispatcher import Dispatcher, build_dispatcher, run_dispatcher
from framecast.webhooks.job_stores import build_job_store
from framecast.webhooks.outbox import WebhookTarget, register
from framecast.webhooks.sender import AttemptResult, WebhookSender
from framecast.webhooks.store import DeliveryStore, RetryPolicy
from tests.integration.webhook_receiver import Receiver

MODEL = "tencent/hunyuan/image-to-video"


def _settings(tmp_path: Path, db_url: str, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": db_url,
        "allow_private_urls": True,  # the receivers are on loopback
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_max_seconds": 0.2,
        "webhook_poll_seconds": 0.05,
    }
    return Settings(**{**base, **values})


class Setup:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db: Engine = create_db_engine(settings.resolved_database_url)
        migrate(self.db)
        self.jobs: JobStore = build_job_store(self.db, settings)
        self.keys = KeyStore(self.db, server_key=settings.signing_key())
        new = self.keys.create("hooks")
        self.owner, self.secret = new.record.id, new.webhook_secret

    def completed(self, url: str, *, intermediate: bool = False) -> str:
        """A request with a webhook at ``url``, run to completion; its id."""
        target = WebhookTarget(url, intermediate, base_url="http://api.test")
        request_id = self.jobs.submit(
            owner=self.owner,
            model=MODEL,
            input={"prompt": "p"},
            image_key="inputs/x",
            also=partial(register, target=target),
        ).id
        lease = self.jobs.claim("w")
        assert lease is not None and lease.request_id == request_id
        result = VideoResult(
            video_key=f"outputs/{request_id}/video.mp4",
            poster_key=f"outputs/{request_id}/poster.jpg",
            metadata={"engine": "test"},
        )
        assert self.jobs.complete(lease, result)
        return request_id

    def dispatcher(self, **values: Any) -> Dispatcher:
        settings = self.settings.model_copy(update=values)
        return build_dispatcher(settings, self.db)

    def rows(self) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(select(webhook_deliveries).order_by("seq")).all())


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(_settings(tmp_path, f"sqlite:///{tmp_path / 'hooks.db'}"))
    yield s
    s.db.dispose()


@pytest.fixture
def receiver(setup: Setup) -> Iterator[Receiver]:
    r = Receiver(setup.secret).start()
    yield r
    r.stop()


def _dispatch(dispatcher: Dispatcher) -> list[Any]:
    async def once() -> list[Any]:
        try:
            return await dispatcher.dispatch_due()
        finally:
            await dispatcher.sender.aclose()

    return asyncio.run(once())


def test_a_completed_request_is_delivered_signed_with_fresh_links(
    setup: Setup, receiver: Receiver
) -> None:
    request_id = setup.completed(receiver.url)
    (outcome,) = _dispatch(setup.dispatcher())
    assert outcome.result.ok and outcome.result.status_code == 204
    (got,) = receiver.wait_for(1).values()
    assert receiver.unverified == 0  # standardwebhooks accepted the signature
    event = verify_webhook(got.body, got.headers, setup.secret)  # and so does framecast.client
    assert event.id == got.id == setup.rows()[0].id
    result = event.as_result()
    assert result.request_id == request_id and result.status == "completed"
    video = got.payload["output"]["video"]
    assert video.startswith(f"http://api.test/v1/files/outputs/{request_id}/video.mp4?")
    assert "signature=" in video and got.payload["finished_at"]
    (row,) = setup.rows()
    assert row.state == "delivered" and row.attempts == 1 and row.last_status_code == 204


def test_a_receiver_that_is_down_gets_each_delivery_once_when_it_is_back(setup: Setup) -> None:
    receiver = Receiver(setup.secret)  # not listening yet: every attempt is refused
    ids = {setup.completed(receiver.url, intermediate=True) for _ in range(3)}
    stop = threading.Event()
    thread = threading.Thread(target=run_dispatcher, args=(setup.settings, stop))
    thread.start()
    try:
        deadline = time.monotonic() + 60  # hang guards: the loops end on what they wait for
        while min(r.attempts for r in setup.rows()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(r.state == "pending" and r.last_error for r in setup.rows())
        receiver.start()
        got = receiver.wait_for(9)  # 3 requests x in_queue, in_progress, completed
        deadline = time.monotonic() + 60
        while any(r.state != "delivered" for r in setup.rows()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
        receiver.stop()
    assert {g.payload["request_id"] for g in got.values()} == ids
    assert sorted(g.payload["status"] for g in got.values()) == sorted(
        ["in_queue", "in_progress", "completed"] * 3
    )
    assert set(receiver.accepted.values()) == {1}  # each accepted exactly once
    assert all(r.state == "delivered" and r.attempts >= 4 for r in setup.rows())


def test_redirects_are_not_followed(setup: Setup, receiver: Receiver) -> None:
    bouncer = Receiver(setup.secret, answer=302, redirect_to=receiver.url).start()
    try:
        setup.completed(bouncer.url)
        (outcome,) = _dispatch(setup.dispatcher())
    finally:
        bouncer.stop()
    assert outcome.result.status_code == 302
    assert "redirects are not followed" in (outcome.result.error or "")
    assert receiver.received == []
    (row,) = setup.rows()
    assert row.state == "pending" and row.last_status_code == 302  # retried later


SLOW_RECEIVER_S = 20.0
"""How long the slow receiver takes to answer (its thread sleeps on; nothing waits for it)."""


def test_a_receiver_gets_the_time_limit_and_no_more(setup: Setup) -> None:
    slow = Receiver(setup.secret, delay=SLOW_RECEIVER_S).start()
    try:
        setup.completed(slow.url)
        started = time.monotonic()
        (outcome,) = _dispatch(setup.dispatcher(webhook_timeout_seconds=0.3))
        took = time.monotonic() - started
    finally:
        slow.stop()
    # Given up at the limit, not when the receiver answers: a hang guard, not a speed bound.
    assert outcome.result.error == "no answer within 0.3 s" and took < SLOW_RECEIVER_S / 2


def test_the_address_is_checked_again_at_delivery(setup: Setup, receiver: Receiver) -> None:
    """At submit the name resolved to a public address; now it resolves to loopback."""

    async def rebound(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async def attempt() -> Any:
        sender = WebhookSender(allow_private=False, resolver=rebound)
        try:
            return await sender.send(f"http://hooks.example.com:{receiver.port}/", {}, b"{}")
        finally:
            await sender.aclose()

    result = asyncio.run(attempt())
    assert result.error is not None and result.error.startswith("refused:")
    assert "loopback" in result.error and "127.0.0.1" not in result.error
    assert receiver.received == []


def test_during_a_rotation_either_secret_verifies(setup: Setup, receiver: Receiver) -> None:
    old = setup.secret
    new = setup.keys.rotate_webhook_secret(setup.owner, dt.timedelta(hours=1))
    receiver.secret = new
    setup.completed(receiver.url)
    _dispatch(setup.dispatcher())
    (got,) = receiver.wait_for(1).values()
    assert len(got.headers["webhook-signature"].split()) == 2
    Webhook(old).verify(got.body, got.headers)  # a receiver not yet switched accepts it too
    setup.keys.rotate_webhook_secret(setup.owner, dt.timedelta(0))  # e.g. after a leak
    assert len(setup.keys.webhook_secrets(setup.owner)) == 1


def test_several_dispatchers_share_the_outbox(tmp_path: Path, db_url: str) -> None:
    setup = Setup(_settings(tmp_path, db_url))
    receiver = Receiver(setup.secret).start()
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_dispatcher, args=(setup.settings, stop)) for _ in range(3)
    ]
    try:
        for thread in threads:
            thread.start()
        for _ in range(20):
            setup.completed(receiver.url)
        receiver.wait_for(20)
        deadline = time.monotonic() + 60
        while any(r.state != "delivered" for r in setup.rows()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        receiver.stop()
        setup.db.dispose()
    assert len(receiver.received) == 20 and set(receiver.accepted.values()) == {1}


def test_a_non_ascii_path_stored_before_normalising_is_sent_encoded(
    setup: Setup, receiver: Receiver
) -> None:
    """A URL stored raw (by a server before submit normalised it) is encoded when sent."""
    setup.completed(f"http://127.0.0.1:{receiver.port}/hooks/ünïcode?name=Zoë")
    (outcome,) = _dispatch(setup.dispatcher())
    assert outcome.result.ok, outcome.result.error
    (got,) = receiver.wait_for(1).values()
    assert got.path == "/hooks/%C3%BCn%C3%AFcode?name=Zo%C3%AB"


def test_an_idn_host_is_resolved_and_sent_in_its_ascii_form(
    setup: Setup, receiver: Receiver
) -> None:
    asked: list[str] = []

    async def dns(host: str, port: int) -> list[str]:  # what DNS would answer for the name
        asked.append(host)
        return ["127.0.0.1"] if host == "xn--bcher-kva.example" else []

    setup.completed(f"http://bücher.example:{receiver.port}/hook")
    dispatcher = setup.dispatcher()
    dispatcher.sender = WebhookSender(allow_private=True, resolver=dns)
    (outcome,) = _dispatch(dispatcher)
    assert outcome.result.ok, outcome.result.error
    (got,) = receiver.wait_for(1).values()
    assert asked == ["xn--bcher-kva.example"]
    assert got.headers["host"] == f"xn--bcher-kva.example:{receiver.port}"


class BrokenSender(WebhookSender):
    """Raises what the sender raised for a non-ASCII target: a bug, not a failed delivery."""

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> AttemptResult:
        raise TypeError("target strings may not include unicode characters")


def test_an_attempt_that_raises_is_a_failed_attempt_and_the_window_ends_it(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    setup.completed("http://127.0.0.1:9/hook")
    now = [utcnow()]
    window = dt.timedelta(hours=24)
    dispatcher = setup.dispatcher()
    dispatcher.sender = BrokenSender()
    dispatcher.store = DeliveryStore(
        setup.db,
        lease=dt.timedelta(seconds=40),
        retry=RetryPolicy(dt.timedelta(seconds=5), dt.timedelta(hours=1), window),
        clock=lambda: now[0],
    )
    reason = "the attempt broke off: TypeError: target strings may not include unicode characters"
    with caplog.at_level(logging.INFO, logger="framecast.webhooks"):
        (first,) = _dispatch(dispatcher)
        assert first.result.error == reason
        (row,) = setup.rows()
        assert (row.state, row.attempts, row.last_error) == ("pending", 1, reason)
        assert row.lease_token is None and row.next_attempt_at > now[0]  # backed off
        assert dispatcher.store.claim(1) == []  # not due again at once, as an expired claim was

        now[0] += window + dt.timedelta(minutes=1)
        (last,) = _dispatch(dispatcher)
    assert last.result.error == reason
    (row,) = setup.rows()
    assert (row.state, row.attempts, row.last_error) == ("failed", 2, reason)
    assert row.finished_at == now[0]
    assert _dispatch(dispatcher) == []  # ended: never attempted again
    # The traceback once, at the first attempt; the second in one line.
    broke = [r for r in caplog.records if "broke off" in r.getMessage()]
    assert [bool(r.exc_info) for r in broke] == [True, False]
