"""``GET /v1/requests`` in-process: a key's own requests, newest first, page by page."""

from __future__ import annotations

import anyio
import httpx
import pytest
from fastapi import FastAPI

from framecast.queue.listing import encode_cursor

from .inprocess import (
    OTHER_KEY,
    SUBMIT,
    SUBMIT_15,
    assert_error,
    client_for,
    run_worker,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_pages_go_newest_first_without_repeats_and_end_with_no_cursor(
    client: httpx.AsyncClient,
) -> None:
    made = [await submit(client) for _ in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/requests", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["requests"]) <= 2
        seen += [body["request_id"] for body in page["requests"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # A request made between pages lands on the first page, not in the one being read.
        if pages == 1:
            made.append(await submit(client))
    assert pages == 3
    assert seen == list(reversed(made[:5]))


async def test_each_entry_is_the_status_body_and_filters_apply(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = await submit(client)
    await anyio.to_thread.run_sync(run_worker, app)
    second = await submit(client, SUBMIT_15)
    page = (await client.get("/v1/requests")).json()
    assert [body["request_id"] for body in page["requests"]] == [second, first]
    assert page["next_cursor"] is None
    for body in page["requests"]:
        status = await client.get(f"/v1/requests/{body['request_id']}/status")
        assert body == status.json()

    done = (await client.get("/v1/requests", params={"status": "completed"})).json()
    assert [body["request_id"] for body in done["requests"]] == [first]
    model = SUBMIT_15.removeprefix("/v1/models/")
    of_15 = (await client.get("/v1/requests", params={"model": model})).json()
    assert [body["request_id"] for body in of_15["requests"]] == [second]
    none = (await client.get("/v1/requests", params={"model": "no/such/model"})).json()
    assert none == {"requests": [], "next_cursor": None}


async def test_another_keys_requests_never_appear(app: FastAPI, client: httpx.AsyncClient) -> None:
    mine = await submit(client)
    async with client_for(app, OTHER_KEY) as other:
        theirs = await submit(other, SUBMIT)
        listed = (await other.get("/v1/requests")).json()
        # Even with a cursor from beyond the first key's request.
        after = encode_cursor(10**9)
        beyond = (await other.get("/v1/requests", params={"cursor": after})).json()
    assert [body["request_id"] for body in listed["requests"]] == [theirs]
    assert mine not in [body["request_id"] for body in beyond["requests"]]
    async with client_for(app, None) as anonymous:
        assert_error(await anonymous.get("/v1/requests"), 401, "unauthorized")


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "djE6LTE"}, "cursor"),  # "v1:-1": well-formed base64, not a position
    ],
)
async def test_bad_parameters_are_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], where: str
) -> None:
    body = assert_error(await client.get("/v1/requests", params=params), 422, "invalid_input")
    assert body["detail"][0]["loc"] == ["query", where], body


async def test_the_page_size_defaults_to_twenty(client: httpx.AsyncClient) -> None:
    for _ in range(21):
        await submit(client)
    page = (await client.get("/v1/requests")).json()
    assert len(page["requests"]) == 20 and page["next_cursor"] is not None
    rest = (await client.get("/v1/requests", params={"cursor": page["next_cursor"]})).json()
    assert len(rest["requests"]) == 1 and rest["next_cursor"] is None
