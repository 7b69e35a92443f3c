"""Webhooks through the real `framecast serve` on loopback, to real receivers: every delivery
verifies with the ``standardwebhooks`` package; a receiver that is down gets each delivery
exactly once when it is back, even across a server restart in between."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.acceptance.conftest import KEY_A, SUBMIT_PATH, Server, png_bytes, wait_for
from tests.integration.webhook_receiver import Receiver

SECRET_KEY = "acceptance-webhooks-server-secret"
FAST_RETRIES = {
    "allow_private_urls": "true",  # the receivers are on loopback
    "secret_key": SECRET_KEY,
    "webhook_retry_base_seconds": "0.2",
    "webhook_retry_max_seconds": "0.5",
    "webhook_poll_seconds": "0.1",
}
BODY = {
    "prompt": "a slow push in",
    "image_url": "data:image/png;base64," + base64.b64encode(png_bytes()).decode(),
    "resolution": "360p",
    "num_frames": 5,
}


def _webhook_secret(server: Server) -> str:
    """KEY_A's webhook secret, as its owner gets it: `framecast keys env-webhook-secrets`."""
    out = subprocess.run(
        [sys.executable, "-m", "framecast", "keys", "env-webhook-secrets"],
        env={**server.env, "FRAMECAST_DATA_DIR": str(server.data_dir), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith(KEY_A[:10]))
    return line.split("\t")[1]


def _submit(client: httpx.Client, receiver: Receiver, intermediate: bool) -> str:
    params = {"webhook": receiver.url, "webhook_intermediate_status": str(intermediate).lower()}
    r = client.post(SUBMIT_PATH, params=params, json=BODY)
    assert r.status_code == 200, r.text
    request_id: str = r.json()["request_id"]
    return request_id


def _outbox(server: Server) -> list[Any]:
    with sqlite3.connect(server.data_dir / "framecast.db") as db:
        return db.execute("SELECT state, attempts FROM webhook_deliveries").fetchall()


def _wait_until_all_delivered(server: Server) -> None:
    """Until the outbox has recorded every delivery's outcome: after that no attempt is
    owed, so a duplicate would have arrived by then."""
    deadline = time.monotonic() + 60  # a hang guard
    while {state for state, _ in _outbox(server)} != {"delivered"}:
        assert time.monotonic() < deadline, _outbox(server)
        time.sleep(0.05)


def test_a_receiver_that_was_down_gets_every_delivery_once_signed(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(**FAST_RETRIES)
    server.start()
    receiver = Receiver(_webhook_secret(server))  # down: nothing listens on its port yet
    try:
        with server.client() as client:
            refused = client.post(SUBMIT_PATH, params={"webhook": "ftp://x.test/"}, json=BODY)
            assert refused.status_code == 422 and refused.json()["error_code"] == 422001
            plain = _submit(client, receiver, intermediate=False)
            chatty = _submit(client, receiver, intermediate=True)
            for request_id in (plain, chatty):
                wait_for(client, request_id, {"completed"}, timeout=60)
            deadline = time.monotonic() + 60  # a hang guard
            while min(a for _, a in _outbox(server)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert {state for state, _ in _outbox(server)} == {"pending"}  # retrying
            receiver.start()
            got = receiver.wait_for(4)  # plain: completed; chatty: in_queue, in_progress, completed
            _wait_until_all_delivered(server)
            assert receiver.unverified == 0
            assert len(receiver.received) == 4 and set(receiver.accepted.values()) == {1}
            by_request = sorted(
                (g.payload["request_id"], g.payload["status"]) for g in got.values()
            )
            assert by_request == sorted(
                [
                    (plain, "completed"),
                    (chatty, "in_queue"),
                    (chatty, "in_progress"),
                    (chatty, "completed"),
                ]
            )
            done = next(
                g.payload
                for g in got.values()
                if g.payload["request_id"] == plain and g.payload["status"] == "completed"
            )
            video = httpx.get(done["output"]["video"], timeout=10)  # the link needs no key
            assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    finally:
        receiver.stop()
        server.stop()


def test_a_restart_between_the_status_change_and_the_delivery_loses_nothing(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(**FAST_RETRIES)
    server.start()
    receiver = Receiver(_webhook_secret(server))
    try:
        with server.client() as client:
            request_id = _submit(client, receiver, intermediate=False)
            wait_for(client, request_id, {"completed"}, timeout=60)
        server.stop()  # the delivery is owed, the receiver still down
        assert [state for state, _ in _outbox(server)] == ["pending"]
        receiver.start()
        server.start()
        (got,) = receiver.wait_for(1).values()
        assert got.payload["request_id"] == request_id and got.payload["status"] == "completed"
        _wait_until_all_delivered(server)
        assert len(receiver.received) == 1 and receiver.unverified == 0
    finally:
        receiver.stop()
        server.stop()
