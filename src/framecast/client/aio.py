"""The asyncio (and trio) client: the same as :class:`framecast.client.Client`, awaited."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType

import anyio
import httpx
from pydantic import JsonValue

from framecast.client import core
from framecast.client.core import Call, ProgressCallback
from framecast.client.errors import connection_error, error_from_response, parse_body
from framecast.client.models import (
    CancelResult,
    ModelCard,
    RequestPage,
    RequestResult,
    RequestStatus,
    Submitted,
)
from framecast.client.sse import EventDecoder


class AsyncClient:
    """A framecast (or RunComfy Model API) server, for ``async`` code.

    ``base_url``: default ``FRAMECAST_SERVER``, else http://127.0.0.1:8000 (RunComfy's is
    https://model-api.runcomfy.net); ``key``: default ``FRAMECAST_KEY``. ``transport`` or a
    whole ``http_client`` replace the network (tests). Every error answer raises
    :class:`APIError`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = core.resolve_server(base_url)
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=timeout)
        self._headers = core.auth_headers(core.resolve_key(key))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    def _request(self, call: Call) -> httpx.Request:
        return self._http.build_request(
            call.method,
            self.base_url + call.path,
            params=call.params or None,
            json=call.json if call.method == "POST" else None,
            headers={**self._headers, **call.headers},
        )

    async def _send(self, call: Call) -> httpx.Response:
        try:
            return await self._http.send(self._request(call))
        except httpx.TransportError as exc:
            raise connection_error(exc, self.base_url) from exc

    # -- the routes ---------------------------------------------------------------------------

    async def submit(
        self,
        model_id: str,
        input: Mapping[str, JsonValue],
        *,
        webhook: str | None = None,
        webhook_intermediate_status: bool | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Queue a request; answers at once with its id (``POST /v1/models/{model_id}``)."""
        call = core.submit_call(
            model_id,
            input,
            webhook=webhook,
            webhook_intermediate_status=webhook_intermediate_status,
            idempotency_key=idempotency_key,
        )
        return core.parse(await self._send(call), Submitted)

    async def status(self, request_id: str) -> RequestStatus:
        return core.parse(await self._send(core.status_call(request_id)), RequestStatus)

    async def result(self, request_id: str) -> RequestResult:
        """The outputs when completed; otherwise the current state (``status`` says which)."""
        return core.parse(await self._send(core.result_call(request_id)), RequestResult)

    async def cancel(self, request_id: str) -> CancelResult:
        return core.parse_cancel(await self._send(core.cancel_call(request_id)))

    async def list_requests(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RequestPage:
        """One page of this key's requests, newest first (framecast's ``GET /v1/requests``)."""
        call = core.list_call(status=status, model=model, limit=limit, cursor=cursor)
        return core.parse(await self._send(call), RequestPage)

    async def iter_requests(
        self, *, status: str | None = None, model: str | None = None, page_size: int = 50
    ) -> AsyncIterator[RequestStatus]:
        """Every request of this key, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_requests(
                status=status, model=model, limit=page_size, cursor=cursor
            )
            for item in page.requests:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def models(self) -> list[ModelCard]:
        """The models a framecast server serves, with their input schemas."""
        return core.parse_models(await self._send(core.models_call()))

    # -- waiting ------------------------------------------------------------------------------

    async def wait(
        self,
        request_id: str,
        *,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = 1.0,
        # The sync client's parameter, kept for parity; anyio.fail_after works as well.
        timeout: float | None = None,  # noqa: ASYNC109
        stream: bool = True,
    ) -> RequestResult:
        """Follow a request to its end and return its result; ``on_progress`` gets each new
        state. Uses the status stream where the server has one, else polls every
        ``poll_interval`` seconds. A failed or cancelled request raises :class:`APIError`."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        progress = core.Progress(on_progress)
        last = await self._follow_stream(request_id, progress, deadline) if stream else None
        while last is None or not last.is_terminal:
            # Past the deadline with no state seen yet: one status read, to say which.
            if deadline is not None and time.monotonic() >= deadline and last is not None:
                raise core.wait_timed_out(request_id, timeout or 0, last)
            if last is not None:
                await anyio.sleep(poll_interval)
            last = progress.saw(await self.status(request_id))
        if not last.succeeded:
            raise core.ended_without_video(last)
        return await self.result(request_id)

    async def subscribe(
        self,
        model_id: str,
        input: Mapping[str, JsonValue],
        *,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = 1.0,
        timeout: float | None = None,  # noqa: ASYNC109
        webhook: str | None = None,
    ) -> RequestResult:
        """Submit and wait: the finished result, with ``on_progress`` called on the way."""
        submitted = await self.submit(model_id, input, webhook=webhook)
        return await self.wait(
            submitted.request_id,
            on_progress=on_progress,
            poll_interval=poll_interval,
            timeout=timeout,
        )

    async def _follow_stream(
        self, request_id: str, progress: core.Progress, deadline: float | None
    ) -> RequestStatus | None:
        """The status stream until a terminal state; the last state seen when it ends early or
        breaks, None when the server has none (the caller polls on from there)."""
        call = core.stream_call(request_id)
        # No read timeout of its own beyond the deadline: states can be minutes apart.
        remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
        request = self._http.build_request(
            call.method,
            self.base_url + call.path,
            headers={**self._headers, **call.headers},
            timeout=httpx.Timeout(30.0, read=remaining),
        )
        # The read timeout alone does not end a wait: keep-alive comments reset it.
        with anyio.move_on_after(math.inf if remaining is None else remaining):
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError:
                return None
            try:
                if core.stream_unavailable(response):
                    return None
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response, parse_body(response))
                decoder = EventDecoder()
                async for line in response.aiter_lines():
                    event = decoder.feed(line)
                    status = core.status_from_event(event) if event is not None else None
                    if status is not None and progress.saw(status).is_terminal:
                        return status
            except httpx.TransportError:
                pass  # a dropped stream: polling carries on from the last state
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
        return progress.last

    # -- files --------------------------------------------------------------------------------

    async def download(self, source: RequestResult | str, path: str | Path) -> Path:
        """Write a result's video (or any output link) to ``path``; returns the path. The link
        is sent without the API key: output links carry their own signature, and may point at
        another host (object storage)."""
        if isinstance(source, str):
            url = source
        elif source.video_url is not None:
            url = source.video_url
        else:
            raise core.no_video(source)
        target = Path(path)
        partial = anyio.Path(target.with_name(target.name + ".part"))
        request = self._http.build_request("GET", url)
        try:
            response = await self._http.send(request, stream=True)
            try:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response, parse_body(response))
                async with await partial.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        await out.write(chunk)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            await partial.unlink(missing_ok=True)
            raise connection_error(exc, url) from exc
        except BaseException:
            with anyio.CancelScope(shield=True):
                await partial.unlink(missing_ok=True)
            raise
        await partial.replace(target)
        return target
