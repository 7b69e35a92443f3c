"""Inputs that once answered 500 (each with two tracebacks in the log), in-process on both
databases: a NUL where PostgreSQL takes text, digits ``int()`` refuses, numbers past 64 bits.
Each is a 4xx in the error shape now, refused before the database sees it, and logs no error."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from framecast.api.waiting import MAX_WAIT_S, parse_prefer_wait
from framecast.queue.listing import BadCursor, decode_cursor, encode_cursor

from .inprocess import SUBMIT, assert_error, make_app, submit

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> FastAPI:
    """PostgreSQL is the one that refused these inputs; SQLite must refuse them alike."""
    if request.param == "sqlite":
        return make_app(tmp_path)
    return make_app(tmp_path, database_url=request.getfixturevalue("pg_schema_url"))


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


HUGE_WAIT = {"Prefer": "wait=" + "7" * 5000}  # past Python's 4,300-digit int() limit

# (method, path, headers, status, code): the nine inputs of issue 21.
MALFORMED = [
    ("GET", "/v1/requests/%00/status", {}, 422, "invalid_input"),
    ("GET", "/v1/requests/%00/result", {}, 422, "invalid_input"),
    ("POST", "/v1/requests/%00/cancel", {}, 422, "invalid_input"),
    ("GET", "/v1/requests/%00/status/stream", {}, 422, "invalid_input"),
    ("GET", "/v1/requests?model=%00", {}, 422, "invalid_input"),
    ("GET", "/v1/requests?cursor=djE6wrI", {}, 422, "invalid_input"),  # "v1:²"
    ("GET", f"/v1/requests?cursor={_cursor('v1:' + '9' * 40)}", {}, 422, "invalid_input"),
    # An unknown id: the wait is parsed (and cut to the cap) before the id is looked up.
    ("GET", "/v1/requests/no-such-request/status", HUGE_WAIT, 404, "request_not_found"),
    # An empty body: the wait is parsed before the body is validated.
    ("POST", SUBMIT, HUGE_WAIT, 422, "invalid_input"),
]


@pytest.mark.parametrize(("method", "path", "headers", "status", "code"), MALFORMED)
async def test_each_once_fatal_input_is_a_4xx_in_the_error_shape(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    with caplog.at_level(logging.ERROR):
        r = await client.request(
            method, path, headers=headers, json={} if method == "POST" else None
        )
    body = assert_error(r, status, code)
    assert "\x00" not in body["error"]["message"]  # a refused value is not echoed raw
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


async def test_a_malformed_id_is_named_in_detail(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get("/v1/requests/a%00b/result"), 422, "invalid_input")
    assert body["detail"][0]["loc"] == ["path", "request_id"]
    assert "letters, digits and hyphens" in body["error"]["message"]


async def test_ids_of_the_allowed_form_still_answer_404_or_their_request(
    client: httpx.AsyncClient,
) -> None:
    request_id = await submit(client)
    assert (await client.get(f"/v1/requests/{request_id}/status")).status_code == 200
    assert_error(await client.get(f"/v1/requests/{'a' * 64}/status"), 404, "request_not_found")
    assert_error(await client.get(f"/v1/requests/{'a' * 65}/status"), 422, "invalid_input")


async def test_a_huge_wait_is_cut_to_the_cap(client: httpx.AsyncClient) -> None:
    request_id = await submit(client)
    assert (await client.post(f"/v1/requests/{request_id}/cancel")).status_code == 200
    # Ended already: the wait returns at once, and says what it applied.
    r = await client.get(f"/v1/requests/{request_id}/status", headers=HUGE_WAIT)
    assert r.status_code == 200, r.text
    assert r.headers["preference-applied"] == f"wait={MAX_WAIT_S}"


async def test_the_listing_still_pages_with_its_own_cursors(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await submit(client)
    first = (await client.get("/v1/requests", params={"limit": 2})).json()
    rest = await client.get("/v1/requests", params={"limit": 2, "cursor": first["next_cursor"]})
    assert rest.status_code == 200 and len(rest.json()["requests"]) == 1


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        ("wait=5", 5),
        ("wait=0005", 5),
        ("wait=" + "0" * 5000 + "7", 7),  # many digits, a small number
        ("wait=" + "9" * 5000, MAX_WAIT_S),
        ("wait", MAX_WAIT_S),
        ("wait=²", None),  # isdigit() says yes, int() says no
        ("wait=٣", None),  # an Arabic-Indic three: int() takes it, HTTP means ASCII
        ("wait=-1", None),
        ("respond-async, wait=10", 10),
    ],
)
def test_prefer_wait_takes_ascii_digits_of_any_length(header: str, wanted: int | None) -> None:
    assert parse_prefer_wait(header) == wanted


@pytest.mark.parametrize(
    "text", ["v1:²", "v1:" + "9" * 40, f"v1:{2**63}", "v1:٣", "v1:", "v2:5", "v1:-1"]
)
def test_a_cursor_is_a_position_a_bigint_holds(text: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(_cursor(text))


def test_the_largest_position_round_trips() -> None:
    assert decode_cursor(encode_cursor(2**63 - 1)) == 2**63 - 1
