"""Where a webhook may be sent: the image URLs' address policy, applied to the ``?webhook=`` URL.

A webhook URL is as much the client's choice as an image URL, and the server POSTs to it, so
it could aim the server at its own network (``http://169.254.169.254/``, an admin port on
localhost). It is checked at submit, to refuse early with a clear 422, and again when each
delivery connects (:mod:`.sender`), because a DNS answer may change in between. Refusals name
the rule broken, never an internal address.

It is normalised at submit as well, and stored so: an IDNA (``xn--``) host, non-ASCII in the
path and query percent-encoded (UTF-8, as browsers send them), no fragment. The URL stored is
then exactly the one each attempt sends, in ASCII as HTTP needs it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from framecast.contract.errors import ErrorCode
from framecast.errors import InputError
from framecast.fetch import Resolver, ascii_host, ascii_target, refusal_reason, system_resolver

MAX_URL_CHARS = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class WebhookUrl:
    """A syntactically valid http(s) URL, split the way a connection needs it."""

    url: str
    """Normalised: what is stored, and what the attempts send."""
    scheme: str
    host: str
    """ASCII, lower case; an IPv6 address without brackets."""
    port: int
    target: str
    """Path and query."""

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def invalid(message: str, code: ErrorCode = ErrorCode.WEBHOOK_URL_INVALID) -> InputError:
    return InputError(message, code=code)


def parse_webhook_url(url: str) -> WebhookUrl:
    """Check the URL's form (not yet its address) and normalise it; :class:`InputError` says
    what is wrong."""
    if len(url) > MAX_URL_CHARS:
        raise invalid(f"webhook is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise invalid("webhook contains spaces or control characters; percent-encode them")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise invalid(f"webhook is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise invalid(
            "webhook must be an http or https URL (URL-encoded in the query string)",
            code=ErrorCode.WEBHOOK_URL_UNSUPPORTED_SCHEME,
        )
    if parts.username is not None or parts.password is not None:
        raise invalid("webhook must not contain a user name or password")
    if not parts.hostname or port == 0:
        raise invalid("webhook needs a host (and a real port, if any)")
    host = ascii_host(parts.hostname, "webhook", code=ErrorCode.WEBHOOK_URL_INVALID)
    port = port or _DEFAULT_PORTS[scheme]
    target = ascii_target(parts.path, parts.query)
    parsed = WebhookUrl("", scheme, host, port, target)
    normalised = f"{scheme}://{parsed.host_header}{target}"
    if len(normalised) > MAX_URL_CHARS:
        raise invalid(
            f"webhook is longer than {MAX_URL_CHARS} characters once its non-ASCII characters "
            "are percent-encoded"
        )
    return replace(parsed, url=normalised)


async def checked_addresses(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[str]:
    """Resolve ``host`` once; its addresses, or :class:`InputError` when it does not resolve or
    any address is one the server must not reach (FRAMECAST_ALLOW_PRIVATE_URLS lifts that)."""
    try:
        found = [ipaddress.ip_address(a) for a in await resolver(host, port)]
    except (OSError, ValueError):
        found = []
    if not found:
        raise invalid(f"webhook host {host} could not be resolved; check the host name")
    if not allow_private:
        for ip in found:
            reason = refusal_reason(ip)
            if reason is not None:
                article = "an" if reason[0].lower() in "aeiou" else "a"
                raise InputError(
                    f"webhook host {host} is {article} {reason} address or resolves to one; "
                    "webhooks go to public internet addresses only "
                    "(FRAMECAST_ALLOW_PRIVATE_URLS=true lifts this, for local development only)",
                    code=ErrorCode.WEBHOOK_URL_REFUSED,
                )
    return [str(ip) for ip in found]


async def check_webhook_url(
    url: str, *, allow_private: bool, resolver: Resolver = system_resolver
) -> WebhookUrl:
    """The submit-time check: the form, then every address the host resolves to now."""
    parsed = parse_webhook_url(url.strip())
    await checked_addresses(
        parsed.host, parsed.port, allow_private=allow_private, resolver=resolver
    )
    return parsed
