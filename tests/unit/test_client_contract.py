"""The client against the answers of routes it cannot reach in-process: the status stream and
the listing framecast is about to serve (their contract: issue 13), and RunComfy's own answers.
An httpx transport plays the server, answering exactly those bodies."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from framecast.client import APIError, Client, RequestStatus
from framecast.client.sse import EventDecoder

RID = "7c0e"


def status(state: str, **fields: object) -> dict[str, object]:
    return {"request_id": RID, "status": state, **fields}


STATES = [
    status("in_queue", queue_position=1),
    status("in_queue", queue_position=0),
    status("in_progress", progress=0.3, phase="rendering", step=1, total_steps=3),
    status("in_progress", progress=0.6, phase="rendering", step=2, total_steps=3),
    status("completed"),
]
RESULT = {**status("completed"), "output": {"video": "http://files/v.mp4"}}


def sse(*bodies: dict[str, object], extra: str = "") -> bytes:
    events = "".join(f"event: status\ndata: {json.dumps(b)}\n\n" for b in bodies)
    return (extra + events).encode()


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[Client, list[str]]:
    paths: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return handler(request)

    return Client("http://server", "k", transport=httpx.MockTransport(record)), paths


def test_the_stream_feeds_progress_in_order_and_ends_at_the_terminal_state() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status/stream"):
            assert request.headers["accept"] == "text/event-stream"
            assert request.headers["authorization"] == "Bearer k"
            # A keep-alive comment, an event of another kind and a repeated state among them.
            body = sse(
                *STATES[:3], STATES[2], *STATES[3:], extra=": ping\n\nevent: other\ndata: {}\n\n"
            )
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        assert request.url.path.endswith("/result")
        return httpx.Response(200, json=RESULT)

    client, paths = client_for(handler)
    seen: list[RequestStatus] = []
    result = client.wait(RID, on_progress=seen.append, poll_interval=0)
    assert [s.model_dump(exclude_none=True) for s in seen] == STATES
    assert result.video_url == "http://files/v.mp4"
    assert paths == [f"/v1/requests/{RID}/status/stream", f"/v1/requests/{RID}/result"]


def test_a_stream_that_breaks_off_is_followed_by_polling() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status/stream"):
            return httpx.Response(
                200, content=sse(*STATES[:3]), headers={"content-type": "text/event-stream"}
            )
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json=STATES[-1])
        return httpx.Response(200, json=RESULT)

    client, paths = client_for(handler)
    seen: list[RequestStatus] = []
    assert client.wait(RID, on_progress=seen.append, poll_interval=0).status == "completed"
    assert [s.status for s in seen] == ["in_queue", "in_queue", "in_progress", "completed"]
    assert paths.count(f"/v1/requests/{RID}/status") == 1


def test_an_error_on_the_stream_is_raised_not_polled_around() -> None:
    body = {
        "error": {"code": "unauthorized", "message": "bad key"},
        "error_code": 401001,
        "error_message": "bad key",
    }
    client, paths = client_for(lambda r: httpx.Response(401, json=body))
    with pytest.raises(APIError) as err:
        client.wait(RID)
    assert (err.value.status_code, err.value.error_code, err.value.message) == (
        401,
        401001,
        "bad key",
    )
    assert len(paths) == 1


def test_a_failed_request_raises_with_its_own_code() -> None:
    failed = status("failed", error={"code": "engine_error", "message": "out of memory"})
    client, _ = client_for(
        lambda r: httpx.Response(
            200, content=sse(failed), headers={"content-type": "text/event-stream"}
        )
    )
    with pytest.raises(APIError) as err:
        client.wait(RID)
    assert err.value.code == "engine_error" and "out of memory" in err.value.message
    assert err.value.request_id == RID


@pytest.mark.parametrize(
    ("code", "body", "message", "error_code"),
    [
        # RunComfy's own shapes: no framecast "error" object.
        (
            404,
            {"error_code": 404001, "error_message": "Request not found"},
            "Request not found",
            404001,
        ),
        (400, {"error_code": "400001", "message": "Invalid model id"}, "Invalid model id", 400001),
        (
            422,
            {
                "error_code": 422001,
                "detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}],
            },
            "prompt: field required",
            422001,
        ),
        # Any answer with error_code is an error, whatever its status.
        (200, {"error_code": 500001, "error_message": "Internal Error"}, "Internal Error", 500001),
        (502, None, "Bad Gateway", None),
    ],
)
def test_runcomfy_error_answers(
    code: int, body: object, message: str, error_code: int | None
) -> None:
    content = json.dumps(body).encode() if body is not None else b""
    client, _ = client_for(lambda r: httpx.Response(code, content=content))
    with pytest.raises(APIError) as err:
        client.status(RID)
    assert (err.value.status_code, err.value.message, err.value.error_code) == (
        code,
        message,
        error_code,
    )
    assert err.value.code is None


def test_runcomfy_cancel_and_result_shapes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/cancel"):
            return httpx.Response(200, json={**status("in_progress"), "outcome": "not_cancellable"})
        return httpx.Response(
            200, json={**status("completed"), "output": {"videos": ["http://v/1.mp4"]}}
        )

    client, _ = client_for(handler)
    assert client.cancel(RID).outcome == "not_cancellable"
    assert client.result(RID).video_url == "http://v/1.mp4"


def test_listing_follows_the_cursor() -> None:
    pages = {
        None: {"requests": [status("completed"), status("failed")], "next_cursor": "c2"},
        "c2": {"requests": [status("cancelled")], "next_cursor": None},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/requests"
        assert request.url.params["status"] == "completed"
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    client, paths = client_for(handler)
    listed = list(client.iter_requests(status="completed", page_size=2))
    assert [r.status for r in listed] == ["completed", "failed", "cancelled"]
    assert len(paths) == 2


def test_a_request_id_cannot_name_another_route() -> None:
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.raw_path)
        return httpx.Response(200, json=status("in_queue"))

    client, _ = client_for(handler)
    client.status("../../models")
    assert sent == [b"/v1/requests/..%2F..%2Fmodels/status"]


def test_the_event_decoder() -> None:
    decoder = EventDecoder()
    lines = ["event: status", 'data: {"a":', "data: 1}", "id: 4", "", ": comment", "", "data:x", ""]
    events = [e for e in map(decoder.feed, lines) if e is not None]
    assert [(e.event, e.data, e.id) for e in events] == [
        ("status", '{"a":\n1}', "4"),
        ("message", "x", "4"),
    ]


def test_a_stream_refused_by_the_streams_cap_is_polled_instead() -> None:
    refused = {
        "error": {"code": "too_many_streams", "message": "limit", "retry_after": 5},
        "error_code": 429001,
        "error_message": "limit",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status/stream"):
            return httpx.Response(429, json=refused, headers={"Retry-After": "5"})
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json=STATES[-1])
        return httpx.Response(200, json=RESULT)

    client, paths = client_for(handler)
    assert client.wait(RID, poll_interval=0).status == "completed"
    assert paths[:2] == [f"/v1/requests/{RID}/status/stream", f"/v1/requests/{RID}/status"]
