"""``Idempotency-Key`` on submit, in-process: one request per key and body for 24 hours,
a 409 for another body, and one winner when submits with one key race (on both databases,
through two app instances sharing the database, as two API nodes would)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from framecast.db import create_db_engine, idempotency_keys, migrate, requests, utcnow
from framecast.idempotency import ABANDONED_AFTER, KEY_TTL, IdempotencyStore

from .inprocess import (
    OTHER_KEY,
    SMALL,
    SUBMIT,
    SUBMIT_15,
    assert_error,
    client_for,
    make_app,
    services_of,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    # Private URLs allowed: a loopback webhook URL passes submit's check.
    return make_app(tmp_path, allow_private_urls=True)


def body(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a slow push in", **SMALL[SUBMIT], **fields}


async def post(client: httpx.AsyncClient, key: str, **fields: Any) -> httpx.Response:
    return await client.post(SUBMIT, json=body(**fields), headers={"Idempotency-Key": key})


def request_count(app: FastAPI) -> int:
    with services_of(app).db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(requests)).scalar_one())


async def test_the_same_key_and_body_answer_the_same_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = await post(client, "order-1")
    again = await post(client, "order-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    # Field order does not make another body.
    reordered = dict(reversed(list(body().items())))
    r = await client.post(SUBMIT, json=reordered, headers={"Idempotency-Key": "order-1"})
    assert r.json()["request_id"] == first.json()["request_id"]
    assert request_count(app) == 1
    # Another key, or none, makes another request.
    assert (await post(client, "order-2")).json()["request_id"] != first.json()["request_id"]
    assert (await client.post(SUBMIT, json=body())).status_code == 200
    assert request_count(app) == 3


async def test_another_body_with_the_key_is_a_409(app: FastAPI, client: httpx.AsyncClient) -> None:
    first = (await post(client, "k")).json()
    answer = assert_error(await post(client, "k", seed=7), 409, "idempotency_key_reused")
    assert answer["error"]["request_id"] == first["request_id"]
    # Another model, or a webhook in the query, is another body too.
    r = await client.post(
        SUBMIT_15,
        json={"prompt": "a slow push in", **SMALL[SUBMIT_15]},
        headers={"Idempotency-Key": "k"},
    )
    assert_error(r, 409, "idempotency_key_reused")
    r = await client.post(
        SUBMIT,
        json=body(),
        params={"webhook": "http://127.0.0.1:9/hook"},
        headers={"Idempotency-Key": "k"},
    )
    assert_error(r, 409, "idempotency_key_reused")
    assert request_count(app) == 1


async def test_keys_are_per_api_key(app: FastAPI, client: httpx.AsyncClient) -> None:
    mine = (await post(client, "shared")).json()["request_id"]
    async with client_for(app, OTHER_KEY) as other:
        theirs = (await post(other, "shared")).json()["request_id"]
        assert_error(await other.get(f"/v1/requests/{mine}/status"), 404, "request_not_found")
    assert theirs != mine


async def test_a_failed_submit_frees_its_key(app: FastAPI, client: httpx.AsyncClient) -> None:
    bad = await client.post(
        SUBMIT,
        json=body(image_url="data:image/png;base64,bm90IGFuIGltYWdl"),
        headers={"Idempotency-Key": "retry-me"},
    )
    assert_error(bad, 422, "image_not_decodable")
    good = await post(client, "retry-me")
    assert good.status_code == 200, good.text
    assert request_count(app) == 1


async def test_a_key_names_its_request_for_24_hours_then_a_new_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = (await post(client, "daily")).json()["request_id"]
    db = services_of(app).db
    long_ago = dt.datetime.now(dt.UTC) - KEY_TTL - dt.timedelta(minutes=1)
    with db.begin() as conn:
        conn.execute(update(idempotency_keys).values(created_at=long_ago))
    second = (await post(client, "daily", seed=3)).json()["request_id"]
    assert second != first
    assert (await post(client, "daily", seed=3)).json()["request_id"] == second


async def test_a_claim_whose_submit_died_is_taken_over(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """An API killed between claiming a key and making its request leaves a claim with no
    request: after a while the key works again rather than waiting forever."""
    services = services_of(app)
    owner = services.keys.owner_for("in-process-test-key")
    assert owner is not None
    stale = dt.datetime.now(dt.UTC) - ABANDONED_AFTER - dt.timedelta(seconds=5)
    with services.db.begin() as conn:
        conn.execute(
            idempotency_keys.insert().values(
                owner=owner,
                key="orphan",
                body_hash="0" * 64,
                request_id="never-made",
                created_at=stale,
            )
        )
    r = await post(client, "orphan")
    assert r.status_code == 200, r.text
    assert r.json()["request_id"] != "never-made"


@pytest.mark.parametrize("value", ["", " ", "x" * 256, "tab\there"])
async def test_a_malformed_key_is_a_422(client: httpx.AsyncClient, value: str) -> None:
    assert_error(await post(client, value), 422, "invalid_input")


async def test_concurrent_submits_with_one_key_make_one_request(
    tmp_path: Path, db_url: str
) -> None:
    """Two API nodes on one database, six submits with the same key at once: every answer
    names the same request, and only one exists."""
    node_a = make_app(tmp_path, database_url=db_url)
    node_b = make_app(tmp_path, database_url=db_url)
    answers: list[httpx.Response] = []
    async with client_for(node_a) as a, client_for(node_b) as b:

        async def one(client: httpx.AsyncClient) -> None:
            answers.append(await post(client, "race"))

        async with anyio.create_task_group() as tg:
            for client in (a, b, a, b, a, b):
                tg.start_soon(one, client)
    assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
    assert len({r.json()["request_id"] for r in answers}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 5
    assert request_count(node_a) == 1


def test_keys_past_their_24_hours_are_swept_and_younger_ones_kept(db_url: str) -> None:
    engine = create_db_engine(db_url)
    migrate(engine)
    store = IdempotencyStore(engine)
    try:
        assert store.claim("owner", "old", "digest", "req-1") is not None
        assert store.claim("owner", "young", "digest", "req-2") is not None
        with engine.begin() as conn:
            conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.key == "old")
                .values(created_at=utcnow() - KEY_TTL - dt.timedelta(minutes=1))
            )
        assert store.sweep_expired() == 1
        with engine.connect() as conn:
            left = conn.execute(select(idempotency_keys.c.key)).scalars().all()
        assert left == ["young"]
    finally:
        engine.dispose()
