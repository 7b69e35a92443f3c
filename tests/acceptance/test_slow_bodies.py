"""Slow bodies against the real server (uvicorn on loopback): issue 21's three connections
without a key no longer hold the body budget against a keyed submit, and the connections the
guard answers early are closed rather than read to the end at the sender's pace."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from .conftest import KEY_A, KEY_B, SUBMIT_PATH, Server

DECLARED = (79_691_776, 79_691_776, 41_943_040)
"""The issue's declarations: together the whole default FRAMECAST_MAX_INFLIGHT_BODY_BYTES."""


@pytest.fixture(scope="module")
def api(make_server: Callable[..., Server]) -> Server:
    # No workers: the API alone. A 2 s body deadline, so a stalled body is cut off quickly.
    s = make_server(workers="0", body_timeout_seconds="2")
    s.start(wait_ready=False)
    return s


def open_slow_body(server: Server, declared: int, key: str | None) -> socket.socket:
    """A submit's headers declaring ``declared`` bytes, then one byte of body."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    sock.sendall(
        (
            f"POST {SUBMIT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n{auth}\r\n{{"
        ).encode()
    )
    return sock


def answer_then_close(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    """Everything the server sends until it closes the connection (the 30 s socket timeout
    fails the test if it never does): status, headers, JSON body."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_a_keyed_submit_gets_in_while_three_slow_bodies_without_a_key_are_open(
    api: Server,
) -> None:
    slow = [open_slow_body(api, size, None) for size in DECLARED]
    with api.client(KEY_A) as c:
        r = c.post(SUBMIT_PATH, json={"prompt": "p", "image_url": "data:image/png;base64,AA"})
    # Answered on its merits (an image that does not decode), not a 503 after 30 s.
    assert r.status_code == 422, r.text
    for sock in slow:
        status, headers, body = answer_then_close(sock)
        assert status == 401 and headers["connection"] == "close"
        assert body["error"] == {
            "code": "unauthorized",
            "message": "missing API key: send it as 'Authorization: Bearer <key>'",
        }


def test_a_stalled_keyed_body_is_a_408_the_connection_closed_and_counted(api: Server) -> None:
    status, headers, body = answer_then_close(open_slow_body(api, 1_000_000, KEY_B))
    assert status == 408 and headers["connection"] == "close"
    assert body["error_code"] == 408001
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "request_timeout"
    with api.client(None) as c:
        metrics = c.get("/metrics").text
    assert 'framecast_slow_bodies_total{limit="deadline"} 1.0' in metrics.splitlines()
