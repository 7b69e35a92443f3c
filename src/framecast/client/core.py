"""What the sync and the async client share: the routes, how answers become typed values or an
:class:`APIError`, and how a wait turns statuses into a result. No I/O here; each client sends
the :class:`Call` values and feeds the answers back."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, JsonValue, ValidationError

from framecast.client.errors import APIError, error_from_response, is_error_answer, parse_body
from framecast.client.models import (
    CancelResult,
    ModelCard,
    RequestResult,
    RequestStatus,
)
from framecast.client.sse import Event
from framecast.models import hunyuan_i2v

DEFAULT_SERVER = "http://127.0.0.1:8000"
DEFAULT_MODEL = hunyuan_i2v.MODEL_ID
"""The model to call when none is named: the first built-in one."""
RUNCOMFY_SERVER = "https://model-api.runcomfy.net"

ProgressCallback = Callable[[RequestStatus], object]
"""Called with each new state while waiting: queue position, each progress step, the end."""

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Call:
    """One HTTP request to make, relative to the server's base URL."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: JsonValue = None
    headers: dict[str, str] = field(default_factory=dict)


def _rid(request_id: str) -> str:
    # An id goes into a path: quoted, so it cannot name another route.
    return quote(request_id, safe="")


def resolve_server(base_url: str | None) -> str:
    return (base_url or os.environ.get("FRAMECAST_SERVER") or DEFAULT_SERVER).rstrip("/")


def resolve_key(key: str | None) -> str | None:
    return key or os.environ.get("FRAMECAST_KEY") or None


def auth_headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def submit_call(
    model_id: str,
    input: Mapping[str, JsonValue],
    *,
    webhook: str | None = None,
    webhook_intermediate_status: bool | None = None,
    idempotency_key: str | None = None,
) -> Call:
    params: dict[str, str] = {}
    if webhook is not None:
        params["webhook"] = webhook
    if webhook_intermediate_status is not None:
        params["webhook_intermediate_status"] = str(webhook_intermediate_status).lower()
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    path = f"/v1/models/{quote(model_id.strip('/'), safe='/')}"
    return Call("POST", path, params, dict(input), headers)


def status_call(request_id: str) -> Call:
    return Call("GET", f"/v1/requests/{_rid(request_id)}/status")


def stream_call(request_id: str) -> Call:
    return Call(
        "GET",
        f"/v1/requests/{_rid(request_id)}/status/stream",
        headers={"Accept": "text/event-stream", "Cache-Control": "no-cache"},
    )


def result_call(request_id: str) -> Call:
    return Call("GET", f"/v1/requests/{_rid(request_id)}/result")


def cancel_call(request_id: str) -> Call:
    return Call("POST", f"/v1/requests/{_rid(request_id)}/cancel")


def list_call(
    *,
    status: str | None = None,
    model: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call:
    given = {"status": status, "model": model, "limit": limit, "cursor": cursor}
    return Call("GET", "/v1/requests", {k: str(v) for k, v in given.items() if v is not None})


def models_call() -> Call:
    return Call("GET", "/v1/models")


def parse(response: httpx.Response, model: type[T]) -> T:
    """The answer as ``model``, or the :class:`APIError` it carries."""
    body = parse_body(response)
    if is_error_answer(response, body):
        raise error_from_response(response, body)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise APIError(
            f"the server's answer to {response.request.method} {response.request.url.path} is "
            f"not what a {model.__name__} looks like ({exc.errors()[0]['msg']}); is "
            f"{response.request.url.scheme}://{response.request.url.netloc.decode()} a "
            "framecast or RunComfy server?",
            status_code=response.status_code,
            code="unexpected_answer",
            body=body,
        ) from exc


def parse_cancel(response: httpx.Response) -> CancelResult:
    """framecast answers a finished request's cancel with a 409 and ``outcome:
    "not_cancellable"``; RunComfy with a 2xx and the same outcome. Both are an answer, not an
    error: the request simply was not cancelled."""
    body = parse_body(response)
    finished = isinstance(body, dict) and body.get("outcome") == "not_cancellable"
    if response.status_code == 409 and finished and isinstance(body, dict):
        state = body.get("error", {})
        request = state.get("request") if isinstance(state, dict) else None
        if isinstance(request, dict):
            return CancelResult.model_validate({**request, "outcome": "not_cancellable"})
    return parse(response, CancelResult)


def parse_models(response: httpx.Response) -> list[ModelCard]:
    return parse(response, _ModelList).models


class _ModelList(BaseModel):
    models: list[ModelCard]


def stream_unavailable(response: httpx.Response) -> bool:
    """The server has no status stream (an older framecast, RunComfy): poll instead. A 404 is
    also an unknown request once the route exists; polling then reports that properly. A 429:
    the key (or server) has as many streams open as it may; polling is not refused by that."""
    if response.status_code in {404, 405, 406, 429, 501}:
        return True
    kind = response.headers.get("content-type", "")
    return response.is_success and not kind.startswith("text/event-stream")


def status_from_event(event: Event) -> RequestStatus | None:
    """A ``status`` event's data is the status route's exact body; other events are ignored."""
    if event.event != "status":
        return None
    try:
        return RequestStatus.model_validate_json(event.data)
    except ValidationError:
        return None


class Progress:
    """Calls ``on_progress`` once per distinct state (polling sees the same state many times)."""

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self._callback = on_progress
        self._last: RequestStatus | None = None

    @property
    def last(self) -> RequestStatus | None:
        return self._last

    def saw(self, status: RequestStatus) -> RequestStatus:
        if self._last is None or status.model_dump() != self._last.model_dump():
            self._last = status
            if self._callback is not None:
                self._callback(status)
        return status


def ended_without_video(status: RequestStatus) -> APIError:
    """The error a wait raises for a request that failed or was cancelled."""
    rid = status.request_id
    if status.error is not None:
        return APIError(
            f"request {rid} failed: {status.error.message}",
            code=status.error.code,
            request_id=rid,
            body=status.model_dump(mode="json"),
        )
    return APIError(
        f"request {rid} was {status.status}",
        code=status.status,
        request_id=rid,
        body=status.model_dump(mode="json"),
    )


def wait_timed_out(request_id: str, timeout: float, last: RequestStatus | None) -> APIError:
    state = f"; it is still {last.status}" if last is not None else ""
    return APIError(
        f"request {request_id} did not finish within {timeout:g} s{state}; it keeps running "
        "on the server: wait again, or cancel it",
        code="wait_timeout",
        request_id=request_id,
    )


def no_video(result: RequestResult) -> APIError:
    note = result.note or "the result has no video link"
    return APIError(
        f"request {result.request_id}: {note}", code="no_video", request_id=result.request_id
    )
