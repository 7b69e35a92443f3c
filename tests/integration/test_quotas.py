"""Per-key limits: active requests and the submit rate, counted in the database so that they
hold across API nodes (here two app instances sharing one database), with 429 + Retry-After
in the one error shape; keys' own limits from the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from framecast.admission.keys import KeyStore
from framecast.admission.quotas import KeyLimits, QuotaExceeded, QuotaStore, limit_value, rate_value
from framecast.cli.main import app as cli_app
from framecast.db import create_db_engine, migrate
from framecast.rates import Rate, parse_rate

from .inprocess import OTHER_KEY, SMALL, SUBMIT, assert_error, client_for, make_app, services_of

pytestmark = pytest.mark.anyio


BODY = {"prompt": "a slow push in", **SMALL[SUBMIT]}


async def post(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(SUBMIT, json=BODY)


def assert_429(r: httpx.Response, code: str, most: int) -> None:
    assert_error(r, 429, code)
    assert 1 <= int(r.headers["retry-after"]) <= most


def test_rates_are_parsed_and_windows_are_fixed() -> None:
    assert parse_rate("60/minute") == Rate(60, 60)
    assert parse_rate(" 10 / second ") == Rate(10, 1)
    assert parse_rate("100/5 minutes") == Rate(100, 300)
    assert parse_rate("1000/hours") == Rate(1000, 3600)
    assert str(parse_rate("100/5 minutes")) == "100/5 minutes"
    for bad in ("60", "0/minute", "ten/minute", "5/fortnight", "-1/second"):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(bad)
    rate = Rate(5, 60)
    assert rate.window_of(125.0) == 120
    assert rate.retry_after(125.0) == 55
    assert rate.retry_after(179.5) == 1
    assert (
        limit_value("3") == 3 and limit_value("unlimited") == 0 and limit_value("default") is None
    )
    assert rate_value("10/minute") == "10/minute" and rate_value("default") is None
    with pytest.raises(ValueError):
        limit_value("0")


def test_the_rate_counts_across_nodes_and_resets_with_the_window(db: Engine) -> None:
    node_a = QuotaStore(db, default_max_active=None, default_rate=None)
    other_engine = create_db_engine(db.url.render_as_string(hide_password=False))
    node_b = QuotaStore(other_engine, default_max_active=None, default_rate=None)
    rate = Rate(3, 60)
    start = 6000.0  # the start of a window
    for node in (node_a, node_b, node_a):
        node.count_submit("owner-1", rate, now=start + 1)
    with pytest.raises(QuotaExceeded) as refused:
        node_b.count_submit("owner-1", rate, now=start + 20)
    assert refused.value.code == "rate_limited"
    assert refused.value.headers == {"Retry-After": "40"}
    node_b.count_submit("owner-2", rate, now=start + 20)  # another owner: its own count
    node_a.count_submit("owner-1", rate, now=start + 60)  # the next window
    node_b.engine.dispose()


async def test_active_requests_are_limited_across_two_nodes(tmp_path: Path, db_url: str) -> None:
    node_a = make_app(tmp_path, database_url=db_url, max_active_per_key=2)
    node_b = make_app(tmp_path, database_url=db_url, max_active_per_key=2)
    async with client_for(node_a) as a, client_for(node_b) as b:
        first = (await post(a)).json()["request_id"]
        assert (await post(b)).status_code == 200
        refused = await post(a)
        assert_429(refused, "too_many_active_requests", 60)
        assert refused.json()["error"]["max_active"] == 2
        async with client_for(node_b, OTHER_KEY) as other:
            assert (await post(other)).status_code == 200  # another key, another count
        # A finished (here: cancelled) request frees its place.
        assert (await b.post(f"/v1/requests/{first}/cancel")).status_code == 200
        assert (await post(b)).status_code == 200
        assert_429(await post(a), "too_many_active_requests", 60)


async def test_concurrent_submits_never_pass_the_active_limit(tmp_path: Path, db_url: str) -> None:
    """Six submits at once through two nodes with room for two: the check in the INSERT's
    transaction lets exactly two through, though each passed the cheap check before."""
    node_a = make_app(tmp_path, database_url=db_url, max_active_per_key=2)
    node_b = make_app(tmp_path, database_url=db_url, max_active_per_key=2)
    answers: list[httpx.Response] = []
    async with client_for(node_a) as a, client_for(node_b) as b:

        async def one(client: httpx.AsyncClient) -> None:
            answers.append(await post(client))

        async with anyio.create_task_group() as tg:
            for client in (a, b, a, b, a, b):
                tg.start_soon(one, client)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 429, 429, 429, 429], [r.text for r in answers]
    quotas = services_of(node_a).quotas
    owner = services_of(node_a).keys.owner_for("in-process-test-key")
    assert owner is not None and quotas.active(owner) == 2


def _window_with_room(seconds: float) -> None:
    """Start a test's submits well inside an hour window, so that they count in one window."""
    left = 3600 - time.time() % 3600
    if left < seconds:
        time.sleep(left + 0.1)


async def test_the_submit_rate_holds_across_two_nodes(tmp_path: Path, db_url: str) -> None:
    node_a = make_app(tmp_path, database_url=db_url, submit_rate="3/hour")
    node_b = make_app(tmp_path, database_url=db_url, submit_rate="3/hour")
    _window_with_room(10)
    async with client_for(node_a) as a, client_for(node_b) as b:
        for client in (a, b, a):
            assert (await post(client)).status_code == 200
        assert_429(await post(b), "rate_limited", 3600)
        assert_429(await post(a), "rate_limited", 3600)
        async with client_for(node_a, OTHER_KEY) as other:
            assert (await post(other)).status_code == 200


async def test_a_keys_own_limits_replace_the_servers(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_active_per_key=1)
    services = services_of(app)
    strict = services.keys.create("strict")
    free = services.keys.create("free")
    services.quotas.set_key_limits(strict.record.id, submit_rate="1/hour")
    services.quotas.set_key_limits(free.record.id, max_active=0)  # unlimited
    _window_with_room(10)
    async with client_for(app, strict.secret) as s, client_for(app, free.secret) as f:
        assert (await post(s)).status_code == 200
        # The server's max_active of 1 still applies to it, and is checked first.
        assert_429(await post(s), "too_many_active_requests", 60)
        for _ in range(3):
            assert (await post(f)).status_code == 200
    services.quotas.set_key_limits(strict.record.id, max_active=None, submit_rate="unlimited")
    assert services.quotas.limits_for(strict.record.id).rate is None
    assert services.quotas.limits_for(strict.record.id).max_active == 1


def test_keys_create_and_set_limits_on_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    made = runner.invoke(
        cli_app,
        ["keys", "create", "--name", "ci", "--max-active", "3", "--rate", "10/minute", *data],
    )
    assert made.exit_code == 0, made.output
    db = create_db_engine(f"sqlite:///{tmp_path / 'data' / 'framecast.db'}")
    migrate(db)
    (record,) = KeyStore(db).list()
    quotas = QuotaStore(db, default_max_active=None, default_rate=None)
    assert quotas.key_limits(record.id) == KeyLimits(3, "10/minute")

    changed = runner.invoke(
        cli_app, ["keys", "set-limits", record.id, "--rate", "unlimited", *data]
    )
    assert changed.exit_code == 0, changed.output
    assert "max-active 3, rate unlimited" in changed.output
    assert quotas.key_limits(record.id) == KeyLimits(3, "unlimited")

    bad = runner.invoke(cli_app, ["keys", "set-limits", record.id, "--rate", "fast", *data])
    assert bad.exit_code == 2 and "not a rate" in bad.output
    unknown = runner.invoke(cli_app, ["keys", "set-limits", "key_nope", "--max-active", "1", *data])
    assert unknown.exit_code == 1 and "no key with id key_nope" in unknown.output
    db.dispose()


async def test_only_requests_made_count_against_the_rate(tmp_path: Path, db_url: str) -> None:
    """Issue 21: submits refused with 422 used up the key's rate. Now a refusal of any kind
    (its input; the active limit, before the INSERT or in its transaction) counts nothing."""
    app = make_app(tmp_path, database_url=db_url, submit_rate="2/hour", max_active_per_key=1)
    not_an_image = {**BODY, "image_url": "data:image/png;base64,bm90IGFuIGltYWdl"}
    _window_with_room(10)
    answers: list[httpx.Response] = []
    async with client_for(app) as client:
        for _ in range(3):
            assert_error(await client.post(SUBMIT, json=not_an_image), 422, "image_not_decodable")

        async def one() -> None:
            answers.append(await post(client))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
        (made,) = [r.json()["request_id"] for r in answers if r.status_code == 200]
        for refused in (r for r in answers if r.status_code != 200):
            assert_429(refused, "too_many_active_requests", 60)
        assert (await client.post(f"/v1/requests/{made}/cancel")).status_code == 200
        second = await post(client)  # the second of two: nothing else was counted
        assert second.status_code == 200, second.text
        cancelled = await client.post(f"/v1/requests/{second.json()['request_id']}/cancel")
        assert cancelled.status_code == 200
        assert_429(await post(client), "rate_limited", 3600)  # the window is full now


async def test_concurrent_submits_never_pass_the_rate(tmp_path: Path, db_url: str) -> None:
    """Counted with the INSERT, after locking the key's counter: six at once through two
    nodes, with room for two in the window, make exactly two requests."""
    node_a = make_app(tmp_path, database_url=db_url, submit_rate="2/hour")
    node_b = make_app(tmp_path, database_url=db_url, submit_rate="2/hour")
    _window_with_room(10)
    answers: list[httpx.Response] = []
    async with client_for(node_a) as a, client_for(node_b) as b:

        async def one(client: httpx.AsyncClient) -> None:
            answers.append(await post(client))

        async with anyio.create_task_group() as tg:
            for client in (a, b, a, b, a, b):
                tg.start_soon(one, client)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 429, 429, 429, 429], [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 429} == {"rate_limited"}
