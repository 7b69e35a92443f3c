"""A request after submit (framecast.api.routes.requests), in-process: status in each state,
the result and its links, cancelling in each state, and one key never seeing another's."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from .inprocess import (
    OTHER_KEY,
    SMALL,
    SUBMIT,
    SUBMIT_15,
    assert_error,
    client_for,
    make_app,
    run_worker,
    services_of,
    submit,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> FastAPI:
    """The queue's answers come from SQL that differs per database: both are run."""
    if request.param == "sqlite":
        return make_app(tmp_path)
    return make_app(tmp_path, database_url=request.getfixturevalue("pg_schema_url"))


# --- status --------------------------------------------------------------------------------------


async def test_queued_requests_have_a_position_and_a_note_while_no_worker_serves_them(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first, second = await submit(client), await submit(client)
    r = await client.get(f"/v1/requests/{second}/status")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == second and body["status"] == "in_queue"
    assert body["queue_position"] == 1
    assert body["status_url"] == f"http://testserver/v1/requests/{second}/status"
    assert body["result_url"] == f"http://testserver/v1/requests/{second}/result"
    assert body["created_at"].endswith("Z")
    assert "no worker serving this model" in body["note"]
    assert (await client.get(f"/v1/requests/{first}/status")).json()["queue_position"] == 0

    # A live worker for another model changes nothing; one for this model drops the note.
    registry = services_of(app).registry
    registry.register("w-15", "host", 1, serves=[SUBMIT_15.removeprefix("/v1/models/")])
    assert "note" in (await client.get(f"/v1/requests/{first}/status")).json()
    registry.register("w-any", "host", 2, serves=None)
    assert "note" not in (await client.get(f"/v1/requests/{first}/status")).json()


RUNCOMFY_SUBMIT = {"request_id", "status_url", "result_url", "cancel_url"}
"""What RunComfy's submit answers."""


async def test_a_submit_no_worker_serves_is_queued_and_its_answer_says_so(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # Queued all the same, as RunComfy queues: workers may start after the API.
    r = await client.post(SUBMIT, json={"prompt": "p", **SMALL[SUBMIT]})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == RUNCOMFY_SUBMIT | {"note"}
    assert "no worker serving this model" in answer["note"]
    status = (await client.get(answer["status_url"])).json()
    assert status["status"] == "in_queue" and status["note"] == answer["note"]

    # A worker for the other model leaves this one's submits noted; its own model's submits
    # answer RunComfy's fields alone.
    registry = services_of(app).registry
    registry.register("w-15", "host", 1, serves=[SUBMIT_15.removeprefix("/v1/models/")])
    noted = await client.post(SUBMIT, json={"prompt": "p", **SMALL[SUBMIT]})
    assert "note" in noted.json()
    served = await client.post(SUBMIT_15, json={"prompt": "p", **SMALL[SUBMIT_15]})
    assert served.status_code == 200 and set(served.json()) == RUNCOMFY_SUBMIT


async def test_a_server_set_to_refuse_answers_503_while_no_worker_serves_the_model(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, no_worker_submit="refuse", heartbeat_seconds=2)
    # An image the server would refuse to fetch (loopback): the 503 comes before any fetch.
    body = {"prompt": "p", **SMALL[SUBMIT], "image_url": "http://127.0.0.1:9/a.png"}
    async with client_for(app) as client:
        r = await client.post(SUBMIT, json=body)
        assert_error(r, 503, "no_worker_for_model")
        assert "FRAMECAST_NO_WORKER_SUBMIT=refuse" in r.json()["error"]["message"]
        assert r.headers["Retry-After"] == "6"  # a starting worker's first beats
        assert (await client.get("/v1/requests")).json()["requests"] == []  # none made
        services_of(app).registry.register("w-any", "host", 1, serves=None)
        r = await client.post(SUBMIT, json={"prompt": "p", **SMALL[SUBMIT]})
    assert r.status_code == 200 and set(r.json()) == RUNCOMFY_SUBMIT


async def test_a_running_request_shows_its_progress(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rid = await submit(client)
    jobs = services_of(app).jobs
    lease = jobs.claim("w-1")
    assert lease is not None and lease.request_id == rid
    jobs.report_step(lease, 3, 10, "denoising", progress=0.25)
    body = (await client.get(f"/v1/requests/{rid}/status")).json()
    assert body["status"] == "in_progress"
    assert (body["progress"], body["phase"], body["step"], body["total_steps"]) == (
        0.25,
        "denoising",
        3,
        10,
    )
    assert body["attempt"] == 1 and body["started_at"].endswith("Z")
    assert "queue_position" not in body and "cancel_requested" not in body


async def test_a_failed_request_says_why_in_its_status_and_its_result(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rid = await submit(client)
    jobs = services_of(app).jobs
    lease = jobs.claim("w-1")
    assert lease is not None
    jobs.fail(lease, "engine_error", "the engine ran out of memory")
    for action in ("status", "result"):
        body = (await client.get(f"/v1/requests/{rid}/{action}")).json()
        assert body["status"] == "failed", action
        assert body["error"] == {"code": "engine_error", "message": "the engine ran out of memory"}
        assert "error_code" not in body  # a failed request is a successful answer, not an error
        assert "output" not in body


# --- result -------------------------------------------------------------------------------------


async def test_the_result_of_an_unfinished_request_is_its_status(client: httpx.AsyncClient) -> None:
    rid = await submit(client)
    status = (await client.get(f"/v1/requests/{rid}/status")).json()
    result = (await client.get(f"/v1/requests/{rid}/result")).json()
    # The same body, less the status's note on workers (a result is not polled for it).
    assert result == {k: v for k, v in status.items() if k != "note"}
    assert result["status"] == "in_queue" and "output" not in result


async def test_a_completed_result_links_to_its_video_and_poster(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rid = await submit(client, seed=7, aspect_ratio="9:16")
    run_worker(app)
    started = time.time()
    r = await client.get(f"/v1/requests/{rid}/result")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed" and body["request_id"] == rid
    assert body["input"]["seed"] == 7 and body["input"]["prompt"] == "a slow push in"
    meta = body["metadata"]
    assert meta["engine"] == "preview" and meta["seed"] == 7
    assert (meta["width"], meta["height"], meta["num_frames"]) == (352, 608, 5)
    for key in ("created_at", "started_at", "finished_at", "links_expire_at"):
        assert body[key].endswith("Z"), key

    video_url, poster_url = body["output"]["video"], body["poster"]
    video = urlsplit(video_url)
    assert f"{video.scheme}://{video.netloc}" == "http://testserver"
    assert video.path == f"/v1/files/outputs/{rid}/video.mp4"
    expires = int(parse_qs(video.query)["expires"][0])
    ttl = services_of(app).settings.link_ttl_seconds
    assert int(started) + ttl <= expires <= int(time.time()) + ttl

    async with client_for(app, key=None) as anyone:  # the link is the credential
        mp4 = await anyone.get(video_url)
        poster = await anyone.get(poster_url)
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    assert mp4.content[4:8] == b"ftyp"
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"

    # Each call signs afresh: a link that expired since does not come back.
    while int(time.time()) == expires - ttl:
        time.sleep(0.01)
    again = (await client.get(f"/v1/requests/{rid}/result")).json()["output"]["video"]
    assert int(parse_qs(urlsplit(again).query)["expires"][0]) > expires


async def test_a_result_whose_files_retention_removed_says_so(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rid = await submit(client)
    run_worker(app)
    assert services_of(app).jobs.mark_data_removed(rid)
    body = (await client.get(f"/v1/requests/{rid}/result")).json()
    assert body["status"] == "completed" and body["output"] is None
    assert "FRAMECAST_RETENTION" in body["note"] and body["data_removed_at"].endswith("Z")
    assert body["metadata"]["engine"] == "preview"


# --- cancel -------------------------------------------------------------------------------------


async def test_cancelling_a_queued_request_cancels_it_for_good(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rid = await submit(client)
    r = await client.post(f"/v1/requests/{rid}/cancel")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outcome"] == "cancelled" and body["status"] == "cancelled"  # RunComfy's
    assert body["finished_at"].endswith("Z")
    assert (await client.get(f"/v1/requests/{rid}/status")).json()["status"] == "cancelled"
    assert services_of(app).jobs.claim("w-1") is None  # no worker ever runs it

    again = await client.post(f"/v1/requests/{rid}/cancel")
    conflict = assert_error(again, 409, "request_already_finished")
    assert conflict["outcome"] == "not_cancellable"
    assert conflict["error"]["request"]["status"] == "cancelled"


async def test_cancelling_a_running_request_asks_it_to_stop(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rid = await submit(client)
    assert services_of(app).jobs.claim("w-1") is not None
    r = await client.post(f"/v1/requests/{rid}/cancel")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["outcome"] == "cancel_requested" and body["status"] == "in_progress"
    assert body["cancel_requested"] is True and "error_code" not in body
    status = (await client.get(f"/v1/requests/{rid}/status")).json()
    assert status["status"] == "in_progress" and status["cancel_requested"] is True


async def test_a_completed_request_cannot_be_cancelled(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rid = await submit(client)
    run_worker(app)
    r = await client.post(f"/v1/requests/{rid}/cancel")
    body = assert_error(r, 409, "request_already_finished")
    assert body["error"]["message"] == f"request {rid} is already completed and cannot be cancelled"
    assert body["outcome"] == "not_cancellable"
    assert body["error"]["request"]["status"] == "completed"
    assert (await client.get(f"/v1/requests/{rid}/status")).json()["status"] == "completed"


# --- one key never sees another's requests ---------------------------------------------------------


async def test_another_keys_request_answers_like_an_unknown_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rid = await submit(client)
    async with client_for(app, OTHER_KEY) as other:
        for method, action in (("GET", "status"), ("GET", "result"), ("POST", "cancel")):
            mine = await other.request(method, f"/v1/requests/{rid}/{action}")
            unknown = await other.request(method, f"/v1/requests/{rid}x/{action}")
            assert assert_error(mine, 404, "request_not_found")["error"]["message"] == (
                f"no request with id {rid}"
            )
            assert_error(unknown, 404, "request_not_found")
    assert (await client.get(f"/v1/requests/{rid}/status")).json()["status"] == "in_queue"
