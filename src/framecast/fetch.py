"""Download a user-supplied ``image_url`` without letting it reach the server's own network.

An image URL comes from the client, so it could name ``http://169.254.169.254/`` (cloud
credentials), ``http://localhost:5432/`` or a host whose DNS record points at either. Every
connection therefore goes through :class:`CheckedBackend`, which resolves the host once, checks
every address, and connects to exactly the address it checked. Redirects are followed here, one
hop at a time, so each hop gets the same treatment.
"""

from __future__ import annotations

import binascii
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import quote, unquote_to_bytes, urljoin, urlsplit

import anyio
import httpcore

from framecast import __version__
from framecast.contract.errors import ErrorCode
from framecast.errors import InputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressPolicy = Callable[[IPAddress], str | None]

_ALLOWED_SCHEMES = "http, https or data"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MiB = 1024 * 1024

log = logging.getLogger("framecast.fetch")


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str | None
    url: str  # final URL after redirects; the literal "data:" for data URIs


# --- which addresses may be fetched ------------------------------------------------------------

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Named explicitly rather than left to ``is_global``: its answers differ between Python versions
# and it calls multicast addresses global. The order matters (0.0.0.0 before 0.0.0.0/8).
_SPECIAL_RANGES: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_V4("0.0.0.0/32"), "unspecified"),
    (_V4("0.0.0.0/8"), "'this network'"),  # Linux connects 0.x.x.x to the local host
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("169.254.0.0/16"), "link-local (cloud metadata)"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
    (_V4("192.0.0.0/24"), "IETF protocol"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("fc00::/7"), "private (unique local)"),
    (_V6("ff00::/8"), "multicast"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("2001:2::/48"), "benchmarking"),
    (_V6("100::/64"), "discard-only"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
)
_IPV4_COMPATIBLE = _V6("::/96")
_NAT64 = _V6("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of the form."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _IPV4_COMPATIBLE:
        return [("IPv4-compatible", low32)]
    if ip in _NAT64:
        return [("NAT64", low32)]
    if ip.sixtofour is not None:
        return [("6to4", ip.sixtofour)]
    if ip.teredo is not None:
        server, client = ip.teredo
        return [("Teredo", server), ("Teredo", client)]
    return []


def refusal_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from (e.g. ``"loopback"``), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # The kernel sends these to the IPv4 address itself, so that address decides alone.
        inner = refusal_reason(ip.ipv4_mapped)
        return None if inner is None else f"IPv4-mapped {inner}"
    for network, reason in _SPECIAL_RANGES:
        if ip.version == network.version and ip in network:
            return reason
    if isinstance(ip, ipaddress.IPv6Address):
        for form, inner_ip in _embedded_ipv4(ip):
            inner = refusal_reason(inner_ip)
            if inner is not None:
                return f"{form} {inner}"
        if ip in _IPV4_COMPATIBLE:
            return "IPv4-compatible (deprecated)"  # not routable; nothing legitimate uses it
    if not ip.is_global:
        return "non-public"
    return None


def _refused(host: str, ip: IPAddress, reason: str) -> InputError:
    article = "an" if reason[0].lower() in "aeiou" else "a"
    # Python 3.11 prints ::ffff:127.0.0.1 as ::ffff:7f00:1, which hides what it is.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    shown = f"::ffff:{mapped}" if mapped else str(ip)
    if host in (str(ip), shown):
        # The URL names the address itself: saying it back tells the client nothing new.
        subject = f"image_url points to {shown}, {article} {reason} address"
    else:
        # What a name resolves to inside the server's network is not the client's business.
        log.warning("refused image_url host %s: it resolves to %s (%s)", host, shown, reason)
        subject = f"image_url host {host} resolves to {article} {reason} address"
    return InputError(
        f"{subject}; only public internet addresses can be fetched. "
        "Host the image somewhere public or send it as a data: URI "
        "(FRAMECAST_ALLOW_PRIVATE_URLS=true lifts this check, for local development only).",
        code=ErrorCode.IMAGE_URL_REFUSED,
    )


# --- URLs ---------------------------------------------------------------------------------------

_HOSTNAME = re.compile(r"[a-z0-9_.-]+")
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


@dataclass(frozen=True)
class _Target:
    """One validated http(s) URL, split the way httpcore wants it."""

    url: str
    scheme: str
    host: str  # ASCII, lower case, IPv6 without brackets
    port: int
    path: str  # path and query, ASCII

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _invalid(message: str) -> InputError:
    return InputError(message, code=ErrorCode.IMAGE_URL_INVALID)


def _parse_http_url(url: str, *, label: str = "image_url") -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid(f"{label} is not a valid URL ({exc}); check how it was written.") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        # A redirect may not switch to data: (browsers refuse that too).
        allowed = _ALLOWED_SCHEMES if label == "image_url" else "http or https"
        shown = f"'{scheme}'" if scheme else "none"
        raise InputError(
            f"{label} has an unsupported scheme ({shown}); use an {allowed} URL.",
            code=ErrorCode.IMAGE_URL_UNSUPPORTED_SCHEME,
        )
    if _UNSAFE_CHARS.search(url):
        raise _invalid(f"{label} contains spaces or control characters; percent-encode them.")
    if parts.username is not None or parts.password is not None:
        raise _invalid(
            f"{label} must not contain a user name or password; remove the 'user@' part."
        )
    if not parts.hostname:
        raise _invalid(f"{label} has no host name; give a full URL like https://example.com/a.png.")
    if port == 0:
        raise _invalid(f"{label} has port 0; give a real port or none.")
    return _Target(
        url=url,
        scheme=scheme,
        host=ascii_host(parts.hostname, label),
        port=port or _DEFAULT_PORTS[scheme],
        path=ascii_target(parts.path, parts.query),
    )


def percent_encode_non_ascii(text: str) -> str:
    """``text`` with every non-ASCII character as its UTF-8 percent-escapes (what browsers
    send); ASCII, escapes already there included, is left as it is."""
    # httpcore sends the request target as ASCII bytes, and refuses anything else.
    return _NON_ASCII.sub(lambda match: quote(match.group()), text)


def ascii_target(path: str, query: str) -> str:
    """A URL's path and query as a request target on the wire (ASCII)."""
    target = percent_encode_non_ascii(path or "/")
    return f"{target}?{percent_encode_non_ascii(query)}" if query else target


def ascii_host(hostname: str, label: str, code: ErrorCode = ErrorCode.IMAGE_URL_INVALID) -> str:
    """A URL's host as it goes on the wire: IDNA (``xn--``) labels for a name, the canonical
    form of an IPv6 address. :class:`InputError` (``code``) when it is neither."""
    if ":" in hostname:
        try:
            return str(ipaddress.IPv6Address(hostname))
        except ValueError:
            raise InputError(f"{label} has an invalid IPv6 host [{hostname}].", code=code) from None
    try:
        encoded = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InputError(f"{label} has an invalid host name {hostname!r}.", code=code) from None
    if not _HOSTNAME.fullmatch(encoded):
        raise InputError(f"{label} has an invalid host name {hostname!r}.", code=code)
    return encoded


# --- data: URIs ---------------------------------------------------------------------------------


def _too_large(max_bytes: int, what: str = "the image at image_url") -> InputError:
    return InputError(
        f"{what} is larger than the {max_bytes / _MiB:g} MB limit; "
        "use a smaller or more compressed image.",
        code=ErrorCode.IMAGE_TOO_LARGE,
    )


def _decode_data_url(url: str, max_bytes: int) -> Fetched:
    """Decode a data: URI. A large one takes a while: run this in a thread (see _decode_base64)."""
    comma = url.find(",")
    if comma < 0:
        raise _invalid(
            "image_url is a data: URI without a ',' before the data; "
            "write it as data:image/png;base64,<data>."
        )
    params = [p.strip() for p in url[len("data:") : comma].split(";")]
    media_type = params[0].lower() or None
    what = "the image in the data: URI"
    if len(params) > 1 and params[-1].lower() == "base64":
        # Percent-escapes and whitespace are legal inside base64 data URIs. The payload is read
        # where it lies in ``url``: a copy of 67 MB would hold the GIL too (see _BASE64_PIECE).
        encoded: str | bytes = url
        start = comma + 1
        if url.find("%", start) >= 0:
            encoded, start = unquote_to_bytes(url[start:]), 0
        # Counting the characters that are not whitespace takes a pass of its own: only when
        # the length alone says it might be too large.
        if (len(encoded) - start) * 3 // 4 - 2 > max_bytes and (
            _base64_chars(encoded, start) * 3 // 4 - 2 > max_bytes
        ):
            raise _too_large(max_bytes, what)
        data = _decode_base64(encoded, start)
    else:
        payload = url[comma + 1 :]
        # Each %XX is three characters for one byte, so this is the least the data can decode to.
        if len(payload) - 2 * payload.count("%") > max_bytes:
            raise _too_large(max_bytes, what)
        data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise _too_large(max_bytes, what)
    return Fetched(data=data, content_type=media_type, url="data:")


_WHITESPACE = " \t\n\r\f"
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Characters decoded per step. Each step's C calls hold the GIL for a few milliseconds at most,
# so the event loop's thread keeps answering while a 67 MB data: URI is decoded in a thread; one
# call over all of it would hold the GIL, and so stall the loop, for a quarter of a second.
_BASE64_PIECE = 1 << 20


def _base64_chars(encoded: str | bytes, start: int) -> int:
    """The characters of ``encoded[start:]`` that are not whitespace, counted a piece at a time
    (see _BASE64_PIECE)."""
    total = len(encoded) - start
    for at in range(start, len(encoded), _BASE64_PIECE):
        end = at + _BASE64_PIECE
        if isinstance(encoded, str):
            total -= sum(encoded.count(c, at, end) for c in _WHITESPACE)
        else:
            total -= sum(encoded.count(c.encode(), at, end) for c in _WHITESPACE)
    return total


def _decode_base64(encoded: str | bytes, start: int) -> bytes:
    """Decode ``encoded[start:]`` as base64, a piece at a time, ignoring whitespace and
    accepting missing padding as browsers do."""
    strict = _decode_strict_base64(encoded, start)
    return strict if strict is not None else _decode_lenient_base64(encoded, start)


def _decode_strict_base64(encoded: str | bytes, start: int) -> bytes | None:
    """The usual data: URI, padded base64 with no whitespace, decoded at the C decoder's speed
    (one pass, a piece at a time, against three for the lenient decoding); None for any other,
    which the lenient decoding reads or refuses."""
    if _BASE64_PIECE % 4 or (len(encoded) - start) % 4:
        return None  # pieces, and the whole, must be groups of four characters
    out = bytearray()
    for at in range(start, len(encoded), _BASE64_PIECE):
        piece = encoded[at : at + _BASE64_PIECE]
        if at + _BASE64_PIECE < len(encoded) and piece[-1:] in ("=", b"="):
            return None  # padding before the end: each piece alone would be valid
        try:
            out += binascii.a2b_base64(piece, strict_mode=True)
        except (binascii.Error, ValueError):  # ValueError: a str with non-ASCII characters
            return None
    return bytes(out)


def _decode_lenient_base64(encoded: str | bytes, start: int) -> bytes:
    """:func:`_decode_base64` for data with whitespace, missing padding or bad characters."""
    out = bytearray()
    carry = b""
    for at in range(start, len(encoded), _BASE64_PIECE):
        text = encoded[at : at + _BASE64_PIECE]
        try:
            piece = carry + (text.encode("ascii") if isinstance(text, str) else text)
        except UnicodeEncodeError:
            raise _invalid_base64() from None
        piece = piece.translate(None, _WHITESPACE.encode())
        whole = len(piece) - len(piece) % 4
        piece, carry = piece[:whole], piece[whole:]
        out += _decode_base64_piece(piece, last=at + _BASE64_PIECE >= len(encoded))
    if carry:
        out += _decode_base64_piece(carry + b"=" * (-len(carry) % 4), last=True)
    return bytes(out)


def _decode_base64_piece(piece: bytes, *, last: bool) -> bytes:
    rest = piece.translate(None, _B64_ALPHABET)
    padded = last and rest in (b"=", b"==") and piece.endswith(rest)
    if rest and not padded:
        raise _invalid_base64()
    try:
        return binascii.a2b_base64(piece)
    except binascii.Error:
        raise _invalid_base64() from None


def _invalid_base64() -> InputError:
    return _invalid("image_url is a data: URI whose base64 data is invalid; re-encode the image.")


# --- connections --------------------------------------------------------------------------------


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's IPv4 and IPv6 addresses, from the system's resolver, without repeats."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    return list(dict.fromkeys(found))


def _unreachable(host: str, port: int, addresses: list[str]) -> InputError:
    return InputError(
        f"could not connect to image_url host {host} port {port} "
        f"(tried {', '.join(addresses)}); check that the URL works from the public internet.",
        code=ErrorCode.IMAGE_FETCH_FAILED,
    )


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses that ``check`` approved, never re-resolving the host name.

    httpcore hands the host name from the URL to ``connect_tcp`` and afterwards calls
    ``start_tls(server_hostname=<that host name>)`` on the returned stream itself, so swapping the
    address here leaves SNI, certificate checks and the Host header on the host name.
    ``unreachable(host, port, addresses)`` makes the error raised when no checked address
    answers. Image fetches and webhook deliveries both connect through it.
    """

    def __init__(
        self,
        check: Callable[[str, int], Awaitable[list[str]]],
        unreachable: Callable[[str, int, list[str]], Exception],
    ) -> None:
        self._check = check
        self._unreachable = unreachable
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._check(host, port)
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # the next checked address may answer
        raise self._unreachable(host, port, addresses)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _read_capped(chunks: AsyncIterable[bytes], max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


def _fetch_failed(message: str) -> InputError:
    return InputError(message, code=ErrorCode.IMAGE_FETCH_FAILED)


class UrlFetcher:
    """Fetches ``image_url`` values; one instance can serve many fetches, concurrently too."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        max_bytes: int = 50 * _MiB,
        timeout: float = 20.0,
        max_redirects: int = 5,
        resolver: Resolver | None = None,
        address_policy: AddressPolicy | None = None,
        decode_limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        """``decode_limiter``: the threads that decode data: URIs (anyio's default ones if None);
        the API shares it with its image decodes, to bound the memory they take together."""
        self._allow_private = allow_private
        self._decode_limiter = decode_limiter
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._max_redirects = max_redirects
        self._resolver = resolver or system_resolver
        self._policy = address_policy or refusal_reason
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=CheckedBackend(self._checked_addresses, _unreachable),
            keepalive_expiry=15.0,
        )
        self._headers = [
            ("User-Agent", f"framecast/{__version__}"),
            ("Accept", "image/*"),
            # A compressed body could inflate past max_bytes unseen (httpcore does not decode it).
            ("Accept-Encoding", "identity"),
        ]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def fetch(self, url: str) -> Fetched:
        url = url.strip()
        if url[:5].lower() == "data:":
            return await anyio.to_thread.run_sync(
                _decode_data_url, url, self._max_bytes, limiter=self._decode_limiter
            )
        target = _parse_http_url(url)
        try:
            # One deadline for everything: DNS, connects, every redirect and the whole body.
            with anyio.fail_after(self._timeout):
                return await self._follow(target)
        except (TimeoutError, httpcore.TimeoutException):
            raise InputError(
                f"image_url took longer than {self._timeout:g} s to download; "
                "use a faster host or a smaller image.",
                code=ErrorCode.IMAGE_FETCH_TIMEOUT,
            ) from None

    async def _follow(self, target: _Target) -> Fetched:
        for _ in range(self._max_redirects + 1):
            result = await self._get(target)
            if isinstance(result, Fetched):
                return result
            target = _parse_http_url(urljoin(target.url, result), label="image_url redirect")
        raise InputError(
            f"image_url redirected more than {self._max_redirects} times; "
            "link to the image itself.",
            code=ErrorCode.IMAGE_FETCH_TOO_MANY_REDIRECTS,
        )

    async def _get(self, target: _Target) -> Fetched | str:
        """Fetch one hop: the body, or the Location of a redirect."""
        url = httpcore.URL(
            scheme=target.scheme, host=target.host, port=target.port, target=target.path
        )
        headers = [("Host", target.host_header), *self._headers]
        try:
            async with self._pool.stream("GET", url, headers=headers) as response:
                # Location values are UTF-8 in practice; _parse_http_url percent-encodes the rest.
                fields = {
                    k.decode("latin-1").lower(): v.decode("utf-8", "replace").strip()
                    for k, v in response.headers
                }
                if response.status in _REDIRECT_STATUSES:
                    if not fields.get("location"):
                        raise _fetch_failed(
                            f"{target.url} answered {response.status} without a Location header."
                        )
                    return fields["location"]
                if not 200 <= response.status < 300:
                    raise _fetch_failed(
                        f"image_url answered HTTP {response.status} ({target.url}); "
                        "check that the URL is right and publicly readable."
                    )
                declared = fields.get("content-length", "")
                if declared.isdigit() and int(declared) > self._max_bytes:
                    raise _too_large(self._max_bytes)
                data = await _read_capped(response.aiter_stream(), self._max_bytes)
                return Fetched(data=data, content_type=fields.get("content-type"), url=target.url)
        except httpcore.ConnectError as exc:
            # CheckedBackend reports failed connects itself, so this is the TLS handshake.
            detail = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc
            raise _fetch_failed(
                f"the TLS handshake with {target.host} failed ({detail or type(exc).__name__}); "
                "the image must be served with a valid certificate."
            ) from None
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise _fetch_failed(
                f"the download from {target.host} broke off ({exc or type(exc).__name__}); "
                "try again later."
            ) from None

    async def _checked_addresses(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` once and return its addresses, refusing if any is not allowed."""
        try:
            found = [ipaddress.ip_address(a) for a in await self._resolver(host, port)]
        except (OSError, ValueError):
            found = []
        if not found:
            raise _fetch_failed(
                f"image_url host {host} could not be resolved; check the host name."
            )
        if not self._allow_private:
            for ip in found:
                reason = self._policy(ip)
                if reason is not None:
                    raise _refused(host, ip, reason)
        return [str(ip) for ip in found]
