"""The body guard in the whole app (framecast.api.limits, in-process): a body without a valid key
is a 401 before it is read or any of the budget reserved, so connections without a key cannot
hold the budget against keyed submits; a keyed body that stalls is a 408 whose reservation is
freed at once, counted in ``/metrics``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from framecast.api.limits import BodySizeLimit

from .inprocess import (
    KEY,
    OTHER_KEY,
    SMALL,
    SUBMIT,
    assert_error,
    client_for,
    make_app,
    submit,
)

pytestmark = pytest.mark.anyio

BUDGET = 1_000_000
"""The in-flight budget (and the body cap) of these tests' apps."""


def guard_of(app: FastAPI) -> BodySizeLimit:
    """The app's body guard: the one its requests go through (the stack is built once)."""
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer, BodySizeLimit):
        layer = getattr(layer, "app")  # each middleware wraps the next
    return layer


class Stalled:
    """A request body that sends ``first`` and then nothing more until ``go`` is set."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.started = False
        self.go = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        if self.first:
            yield self.first
        await self.go.wait()


async def test_bodies_without_a_valid_key_are_401_before_they_are_read_or_reserved(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, max_body_bytes=BUDGET, max_inflight_body_bytes=BUDGET)
    guard = guard_of(app)
    assert guard.budget is not None
    # The attack, scaled: declarations that fill the budget, bodies that never come.
    attempts = {
        "no header": ({}, 400_000),
        "wrong key": ({"Authorization": "Bearer not-a-key"}, 400_000),
        "another scheme": ({"Authorization": f"Basic {KEY}"}, 199_000),
    }
    bodies = {why: Stalled() for why in attempts}
    async with client_for(app, key=None) as anonymous, client_for(app) as keyed:
        answers = await asyncio.gather(
            *(
                anonymous.post(
                    SUBMIT,
                    content=bodies[why],
                    headers={**header, "Content-Length": str(size)},
                )
                for why, (header, size) in attempts.items()
            )
        )
        assert guard.budget.reserved == 0
        request_id = await submit(keyed)  # right after: the whole budget is there for it
    for why, r in zip(attempts, answers, strict=True):
        body = assert_error(r, 401, "unauthorized")
        expected = "invalid or revoked" if why == "wrong key" else "missing API key"
        assert body["error"]["message"].startswith(expected), why
        assert r.headers["connection"] == "close", why  # the unread body is not waited for
        assert not bodies[why].started, why
    assert request_id


async def test_a_chunked_body_without_a_key_is_a_401_too(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    body = Stalled(b"{")
    async with client_for(app, key=None) as anonymous:
        r = await anonymous.post(SUBMIT, content=body)  # no length: chunked
    assert_error(r, 401, "unauthorized")
    assert not body.started


async def test_a_stalled_keyed_body_is_408_and_its_reservation_is_freed_at_once(
    tmp_path: Path,
) -> None:
    # Deadline 0.5 s (under the 10 s grace, so the deadline is what cuts it off).
    app = make_app(
        tmp_path,
        max_body_bytes=BUDGET,
        max_inflight_body_bytes=BUDGET,
        max_inflight_body_bytes_per_key=BUDGET,
        body_timeout_seconds=0.5,
    )
    guard = guard_of(app)
    assert guard.budget is not None
    stalled = Stalled(b'{"prompt": "p", "image_url": "data:image/png;base64,AAAA')
    small = json.dumps({"prompt": "p", **SMALL[SUBMIT]}).encode()
    async with client_for(app) as c, client_for(app, OTHER_KEY) as other:
        slow = asyncio.create_task(
            c.post(SUBMIT, content=stalled, headers={"Content-Length": str(900_000)})
        )
        for _ in range(500):  # until the stalled body holds its reservation
            if guard.budget.reserved:
                break
            await asyncio.sleep(0.01)
        assert guard.budget.reserved == 900_000
        # Finds no room until the stalled body is cut off; then it is read and answered.
        waiting = await other.post(
            SUBMIT,
            content=small + b" " * 200_000,
            headers={"Content-Type": "application/json"},
        )
        r = await slow
        metrics = await c.get("/metrics")
    body = assert_error(r, 408, "request_timeout")
    assert r.headers["connection"] == "close"
    assert "FRAMECAST_BODY_TIMEOUT_SECONDS" in body["error"]["message"]
    assert waiting.status_code == 200, waiting.text  # it got the room the cut freed
    assert guard.budget.reserved == 0
    counted = {
        sample.labels["limit"]: sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "framecast_slow_bodies_total"
    }
    assert counted == {"deadline": 1.0, "min_rate": 0.0}


async def test_a_key_holds_at_most_its_share_of_the_budget_by_default(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_inflight_body_bytes=BUDGET)
    guard = guard_of(app)
    assert guard.budget is not None and guard.budget.share == BUDGET // 2
    explicit = make_app(
        tmp_path / "explicit", max_inflight_body_bytes=BUDGET, max_inflight_body_bytes_per_key=123
    )
    budget = guard_of(explicit).budget
    assert budget is not None and budget.share == 123
