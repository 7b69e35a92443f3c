"""Checking a webhook delivery's signature, per the Standard Webhooks specification
(https://www.standardwebhooks.com): the same check the ``standardwebhooks`` package does, with
the standard library only.

A delivery carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature`` (space-separated ``v1,<base64 HMAC-SHA256>`` entries; several while a
secret is being rotated). The signed content is ``{id}.{timestamp}.{body}``, keyed with the
secret: ``whsec_`` followed by base64.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import JsonValue, ValidationError

from framecast.client.models import RequestResult

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix of every secret, not a secret)
DEFAULT_TOLERANCE_S = 300
"""How far a delivery's timestamp may be from now: five minutes, as the specification says,
so a captured delivery cannot be replayed later."""


class WebhookVerificationError(ValueError):
    """The delivery is not signed with this secret, is missing a header, or is too old or
    too new. Answer it with a 4xx and do not act on it."""


@dataclass(frozen=True)
class WebhookEvent:
    """A verified delivery. ``id`` is stable across retries of the same delivery: use it to
    drop duplicates (deliveries are at least once)."""

    id: str
    timestamp: dt.datetime
    payload: JsonValue

    def as_result(self) -> RequestResult:
        """The payload as a request's result (request_id, status, timestamps, output)."""
        try:
            return RequestResult.model_validate(self.payload)
        except ValidationError as exc:
            raise WebhookVerificationError(
                f"the payload is not a request's status: {exc.errors()[0]['msg']}"
            ) from exc


def secret_bytes(secret: str | bytes) -> bytes:
    """The HMAC key of a ``whsec_...`` secret (its base64 part, padding optional)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        encoded = secret.strip().removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error as exc:
            raise WebhookVerificationError(
                "the webhook secret is not base64 after 'whsec_'; copy it exactly as "
                "`framecast keys create` printed it"
            ) from exc
    if not key:
        raise WebhookVerificationError("the webhook secret is empty")
    return key


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        return b""


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: dt.datetime | None = None,
) -> WebhookEvent:
    """Check a delivery and return it, parsed. ``body``: the raw bytes as received (not
    re-serialised JSON, whose bytes may differ); ``headers``: any case."""
    raw = body.encode() if isinstance(body, str) else body
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        missing = [
            name
            for name, value in (
                ("webhook-id", msg_id),
                ("webhook-timestamp", stamp),
                ("webhook-signature", signatures),
            )
            if not value
        ]
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    try:
        seconds = int(stamp)
    except ValueError as exc:
        raise WebhookVerificationError(f"webhook-timestamp {stamp!r} is not Unix seconds") from exc
    current = (now or dt.datetime.now(dt.UTC)).timestamp()
    if seconds < current - tolerance_s:
        raise WebhookVerificationError("the delivery's timestamp is too old (a replay?)")
    if seconds > current + tolerance_s:
        raise WebhookVerificationError("the delivery's timestamp is in the future")
    expected = base64.b64decode(sign(secret, msg_id, seconds, raw).partition(",")[2])
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(expected, _b64(value)):
            break
    else:
        raise WebhookVerificationError("no signature matches this secret")
    try:
        payload: JsonValue = json.loads(raw)
    except ValueError as exc:
        raise WebhookVerificationError("the body is not JSON") from exc
    return WebhookEvent(msg_id, dt.datetime.fromtimestamp(seconds, dt.UTC), payload)
