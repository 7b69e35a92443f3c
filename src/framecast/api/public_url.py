"""The root of every URL the API hands out (``status_url``, ``result_url``, signed file links,
the links in webhook payloads): FRAMECAST_PUBLIC_BASE_URL when it is set, else the request's
own scheme and ``Host`` header.

The ``Host`` header is whatever the client sent. With FRAMECAST_PUBLIC_BASE_URL set it is not
used at all, so nothing a client puts there reaches a URL. Without it, it must at least be a
host and port: a value such as ``evil.example/phish?`` or ``a@evil.example`` would otherwise be
copied into the links verbatim, so it is refused with a 400 (RFC 9112 asks servers to refuse
an invalid ``Host`` so) rather than echoed.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from framecast.contract.errors import ErrorCode
from framecast.errors import FramecastError

_HOST = re.compile(
    r"""
    (?: [A-Za-z0-9_] (?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_.])?   # a name or an IPv4 address
      | \[ [0-9A-Fa-f:.]{2,45} \]                             # an IPv6 address
    )
    (?: : [0-9]{1,5} )?                                       # a port
    """,
    re.VERBOSE,
)


def base_url(request: Request, configured: str | None) -> str:
    """The root of the URLs handed out in answer to ``request``; a 400 ``invalid_host`` for a
    ``Host`` header that is not a host and port, when there is no configured root to use."""
    if configured:
        return configured.rstrip("/")
    host = request.headers.get("host")
    if host is not None and not _HOST.fullmatch(host):
        raise FramecastError(
            "the Host header is not a host name or address with an optional port; links in "
            "the answer are made from it (the server's FRAMECAST_PUBLIC_BASE_URL is unset)",
            code=ErrorCode.INVALID_HOST,
            status=400,
        )
    return str(request.base_url).rstrip("/")
