"""A request's time-to-start deadline (``X-Fal-Request-Timeout``): still queued past it, it
ends cancelled with outcome expired, never run: in its status, its webhook, /metrics' totals,
and OpenAI's Video object."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from framecast.db import requests, utcnow, webhook_deliveries
from framecast.queue.jobs import EXPIRED, Job, JobStore
from framecast.queue.request_totals import read
from framecast.states import Status

from .inprocess import (
    SMALL,
    SUBMIT,
    assert_error,
    client_for,
    data_uri,
    make_app,
    png,
    services_of,
)

pytestmark = pytest.mark.anyio

TIMEOUT = "X-Fal-Request-Timeout"


def _wait_past_deadline(job: Job) -> None:
    """Until the request's deadline is behind us (a few tenths of a second)."""
    assert job.start_deadline is not None
    while utcnow() <= job.start_deadline:
        time.sleep(0.02)


async def _submit(client: httpx.AsyncClient, seconds: str, **params: str) -> str:
    r = await client.post(
        SUBMIT, json={"prompt": "p", **SMALL[SUBMIT]}, params=params, headers={TIMEOUT: seconds}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["request_id"])


async def test_a_request_queued_past_its_deadline_ends_expired_and_never_runs(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    jobs: JobStore = services_of(app).jobs
    late = await _submit(client, "0.2")
    patient = await _submit(client, "3600")
    job = jobs.get(late)
    assert job is not None and job.status is Status.IN_QUEUE
    _wait_past_deadline(job)

    # A worker's claim passes over it (before any sweep) and takes the next one.
    lease = jobs.claim("w")
    assert lease is not None and lease.request_id == patient
    stored = jobs.get(late, owner=None)
    assert stored is not None and stored.status is Status.CANCELLED  # read: expired at once
    assert stored.started_at is None and stored.attempts == 0

    r = await client.get(f"/v1/requests/{late}/status")
    body = r.json()
    assert (body["status"], body["outcome"]) == ("cancelled", "expired")
    assert "deadline" in body["note"]
    with jobs.engine.connect() as conn:
        finished = read(conn).finished
    assert finished[(SUBMIT.removeprefix("/v1/models/"), "cancelled", EXPIRED)] == 1

    video = (await client.get(f"/v1/videos/{late}")).json()
    assert (video["status"], video["error"]["code"]) == ("failed", "expired")


async def test_the_sweep_expires_requests_nobody_reads(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    jobs: JobStore = services_of(app).jobs
    ids = [await _submit(client, "0.2"), await _submit(client, "0.2")]
    kept = await _submit(client, "3600")
    for request_id in ids:
        with jobs.engine.connect() as conn:
            row = conn.execute(select(requests).where(requests.c.id == request_id)).mappings().one()
        _wait_past_deadline(Job.from_row(row))  # read raw: get() would expire it itself
    assert sorted(jobs.expire_overdue()) == sorted(ids)
    assert jobs.expire_overdue() == []  # each once
    # The listing reads rows as they are: what it shows, the sweep did.
    page = (await client.get("/v1/requests")).json()["requests"]
    states = {r["request_id"]: (r["status"], r.get("outcome")) for r in page}
    assert states == {
        ids[0]: ("cancelled", "expired"),
        ids[1]: ("cancelled", "expired"),
        kept: ("in_queue", None),
    }


async def test_the_webhook_of_an_expired_request_says_so(tmp_path: Path) -> None:
    app = make_app(tmp_path, allow_private_urls=True)
    jobs: JobStore = services_of(app).jobs
    async with client_for(app) as client:
        request_id = await _submit(client, "0.2", webhook="http://127.0.0.1:9/hook")
    job = jobs.get(request_id)
    assert job is not None
    _wait_past_deadline(job)
    assert jobs.expire_overdue() == [request_id]
    with jobs.engine.connect() as conn:
        payloads = (
            conn.execute(
                select(webhook_deliveries.c.payload).where(
                    webhook_deliveries.c.request_id == request_id
                )
            )
            .scalars()
            .all()
        )
    assert [(p["status"], p.get("outcome")) for p in payloads] == [("cancelled", "expired")]


async def test_the_openai_route_takes_the_same_header(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    jobs: JobStore = services_of(app).jobs
    r = await client.post(
        "/v1/videos",
        json={"prompt": "p", "input_reference": {"image_url": data_uri(png())}},
        headers={TIMEOUT: "0.2"},
    )
    assert r.status_code == 200, r.text
    with jobs.engine.connect() as conn:
        row = conn.execute(select(requests).where(requests.c.id == r.json()["id"])).mappings().one()
    _wait_past_deadline(Job.from_row(row))
    video = (await client.get(f"/v1/videos/{r.json()['id']}")).json()
    assert (video["status"], video["error"]["code"]) == ("failed", "expired")


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf", "1e12"])
async def test_a_deadline_that_is_no_number_of_seconds_is_refused(
    client: httpx.AsyncClient, value: str
) -> None:
    r = await client.post(SUBMIT, json={"prompt": "p", **SMALL[SUBMIT]}, headers={TIMEOUT: value})
    body = assert_error(r, 422, "invalid_input")
    assert body["detail"][0]["loc"] == ["header", TIMEOUT]
    assert (await client.get("/v1/requests")).json()["requests"] == []
