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
from sqlalchemy import event, func, select, update

from framecast.admission.idempotency import (
    KEY_TTL,
    SUBMIT_MARGIN,
    IdempotencyConflict,
    IdempotencyStore,
    body_hash,
    submit_deadline,
)
from framecast.db import create_db_engine, idempotency_keys, migrate, requests, utcnow

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
    stale = dt.datetime.now(dt.UTC) - services.idempotency.abandoned_after - dt.timedelta(seconds=5)
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


def test_a_claim_is_abandoned_after_about_the_submits_own_deadline(tmp_path: Path) -> None:
    """Not minutes: the image download's limit and a margin for the rest of the submit."""
    app = make_app(tmp_path, fetch_timeout_seconds=7)
    assert services_of(app).idempotency.abandoned_after == submit_deadline(7)
    assert submit_deadline(7) == dt.timedelta(seconds=7) + SUBMIT_MARGIN


async def test_a_retry_after_the_api_died_mid_submit_waits_out_the_claim_and_is_made(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Issue 21: such a retry hung, then got 409 idempotency_key_in_progress for minutes. It
    now waits until the dead submit's claim counts as abandoned, takes it over and answers."""
    services = services_of(app)
    services.idempotency.abandoned_after = dt.timedelta(seconds=0.5)  # the test's own deadline
    owner = services.keys.owner_for("in-process-test-key")
    assert owner is not None
    claimed_at = utcnow()  # the killed submit's claim: just now, and no request ever made
    with services.db.begin() as conn:
        conn.execute(
            idempotency_keys.insert().values(
                owner=owner,
                key="killed",
                body_hash=body_hash(SUBMIT.removeprefix("/v1/models/"), body(), []),
                request_id="never-made",
                created_at=claimed_at,
            )
        )
    r = await post(client, "killed")
    assert r.status_code == 200, r.text
    request_id = r.json()["request_id"]
    assert request_id != "never-made"
    job = services.jobs.get(request_id)
    assert job is not None and job.created_at >= claimed_at + dt.timedelta(seconds=0.5)
    again = await post(client, "killed")
    assert again.json()["request_id"] == request_id and again.headers["idempotent-replayed"]


def test_a_submit_whose_claim_was_taken_over_makes_nothing(db_url: str) -> None:
    """A submit that was only slow, not dead, past the window: the one that took its key over
    makes the request, and the slow one's INSERT is refused rather than make a second."""
    engine = create_db_engine(db_url)
    migrate(engine)
    store = IdempotencyStore(engine, abandoned_after=dt.timedelta(seconds=30))
    try:
        assert store.claim("owner", "k", "digest", "slow") is not None
        with engine.begin() as conn:
            conn.execute(
                update(idempotency_keys).values(created_at=utcnow() - dt.timedelta(minutes=1))
            )
        taken = store.claim("owner", "k", "digest", "retry")
        assert taken is not None and (taken.request_id, taken.replay) == ("retry", False)
        with pytest.raises(IdempotencyConflict) as refused, engine.begin() as conn:
            store.insert_guard("owner", "k", "slow")(conn, None)
        assert refused.value.code == "idempotency_key_in_progress"
        with engine.begin() as conn:
            store.insert_guard("owner", "k", "retry")(conn, None)  # the claim's owner: made
        with engine.connect() as conn:
            row = conn.execute(select(idempotency_keys)).one()
        assert row.request_id == "retry" and row.created_at > utcnow() - dt.timedelta(minutes=1)
    finally:
        engine.dispose()


def test_a_takeover_decided_before_the_slow_submits_insert_committed_does_not_happen(
    pg_schema_url: str,
) -> None:
    """The race the guard's touch settles, on PostgreSQL (SQLite runs one writing transaction
    at a time, so there it cannot interleave): a takeover that read the claim as abandoned just
    before the slow submit's INSERT committed finds the claim changed, and waits instead."""
    engine = create_db_engine(pg_schema_url)
    migrate(engine)
    store = IdempotencyStore(engine, abandoned_after=dt.timedelta(seconds=30))
    try:
        assert store.claim("owner", "k", "digest", "slow") is not None
        with engine.begin() as conn:
            conn.execute(
                update(idempotency_keys).values(created_at=utcnow() - dt.timedelta(minutes=1))
            )
        committed: list[bool] = []

        def slow_insert_commits_first(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
            # Between the takeover's read and its UPDATE: the slow submit's INSERT commits.
            if statement.startswith("UPDATE idempotency_keys") and not committed:
                committed.append(True)
                with engine.begin() as other:
                    store.insert_guard("owner", "k", "slow")(other, None)

        event.listen(engine, "before_cursor_execute", slow_insert_commits_first)
        try:
            assert store.claim("owner", "k", "digest", "retry") is None  # wait, not take over
        finally:
            event.remove(engine, "before_cursor_execute", slow_insert_commits_first)
        assert committed
        with engine.connect() as conn:
            assert conn.execute(select(idempotency_keys.c.request_id)).scalar_one() == "slow"
    finally:
        engine.dispose()
