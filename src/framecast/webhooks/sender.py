"""One webhook attempt: a signed POST to the checked address, 10 s, no redirects.

The connection goes through :func:`_pinned_backend`, which resolves the host when it connects,
checks every address against the same policy as at submit (a DNS answer may have changed since)
and connects to exactly an address it checked. Redirects are not followed: a 3xx is a failed
attempt, so a receiver cannot bounce the server's POST onto another host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import anyio
import httpcore

from framecast import __version__
from framecast.errors import InputError
from framecast.fetch import CheckedBackend, Resolver, system_resolver
from framecast.webhooks.targets import WebhookUrl, checked_addresses, parse_webhook_url

MAX_RESPONSE_BYTES = 64 * 1024
"""Read (and dropped) of a receiver's answer, enough to keep the connection reusable."""


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    """Why the attempt failed, in words; None when it succeeded (a 2xx)."""

    @property
    def ok(self) -> bool:
        return self.error is None


class _Refused(Exception):
    """The host resolved to an address deliveries must not reach; carries the reason."""


def _pinned_backend(*, allow_private: bool, resolver: Resolver) -> CheckedBackend:
    """Resolves the host when it connects, checks every address as at submit, and connects
    to exactly an address it checked (the same backend as image fetches)."""

    async def check(host: str, port: int) -> list[str]:
        try:
            return await checked_addresses(
                host, port, allow_private=allow_private, resolver=resolver
            )
        except InputError as exc:
            raise _Refused(exc.message) from None

    def unreachable(host: str, port: int, addresses: list[str]) -> Exception:
        return httpcore.ConnectError(f"could not connect to {host} port {port}")

    return CheckedBackend(check, unreachable)


class WebhookSender:
    """Sends attempts; one instance serves many at once (it pools connections per host)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        timeout: float = 10.0,
        resolver: Resolver = system_resolver,
        max_connections: int = 100,
    ) -> None:
        self.timeout = timeout
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=_pinned_backend(allow_private=allow_private, resolver=resolver),
            max_connections=max_connections,
            keepalive_expiry=30.0,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> AttemptResult:
        try:
            target = parse_webhook_url(url)
        except InputError as exc:
            return AttemptResult(None, exc.message)
        try:
            # One deadline for the whole attempt: DNS, connect, TLS, the body both ways.
            with anyio.fail_after(self.timeout):
                return await self._post(target, headers, body)
        except TimeoutError:
            return AttemptResult(None, f"no answer within {self.timeout:g} s")
        except _Refused as exc:
            return AttemptResult(None, f"refused: {exc}")
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException) as exc:
            return AttemptResult(None, f"{type(exc).__name__}: {exc or 'connection failed'}")

    async def _post(
        self, target: WebhookUrl, headers: Mapping[str, str], body: bytes
    ) -> AttemptResult:
        request_headers = [
            ("Host", target.host_header),
            ("User-Agent", f"framecast/{__version__}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *headers.items(),
        ]
        url = httpcore.URL(
            scheme=target.scheme, host=target.host, port=target.port, target=target.target
        )
        async with self._pool.stream("POST", url, headers=request_headers, content=body) as answer:
            read = 0
            async for chunk in answer.aiter_stream():
                read += len(chunk)
                if read > MAX_RESPONSE_BYTES:
                    break
            status = answer.status
        if 200 <= status < 300:
            return AttemptResult(status, None)
        if 300 <= status < 400:
            return AttemptResult(status, f"answered {status}; redirects are not followed")
        return AttemptResult(status, f"answered {status}")
