"""Webhook signatures checked against the reference implementation (the ``standardwebhooks``
package): what it signs, the client accepts; what the client signs, it accepts; anything else
is refused."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from collections.abc import Callable

import pytest
from standardwebhooks import Webhook

from framecast.client import WebhookVerificationError, verify_webhook
from framecast.client.webhooks import sign

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
BODY = json.dumps(
    {
        "request_id": "7c0e",
        "status": "completed",
        "output": {"video": "http://x/v.mp4"},
        "finished_at": "2026-11-25T19:00:00Z",
    }
).encode()


def reference_headers(
    body: bytes = BODY, secret: str = SECRET, at: dt.datetime | None = None
) -> dict[str, str]:
    at = at or dt.datetime.now(dt.UTC)
    signature = Webhook(secret).sign("msg_2x8", at, body.decode())
    return {
        "Webhook-Id": "msg_2x8",
        "Webhook-Timestamp": str(int(at.timestamp())),
        "Webhook-Signature": signature,
    }


def test_a_delivery_signed_by_the_reference_verifies() -> None:
    event = verify_webhook(BODY, reference_headers(), SECRET)
    assert event.id == "msg_2x8"
    result = event.as_result()
    assert (result.request_id, result.status, result.video_url) == (
        "7c0e",
        "completed",
        "http://x/v.mp4",
    )


def test_the_reference_accepts_what_the_client_signs() -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(SECRET, "msg_1", now, BODY),
    }
    assert Webhook(SECRET).verify(BODY, headers)["request_id"] == "7c0e"


def test_any_matching_signature_passes_while_a_secret_is_rotated() -> None:
    headers = reference_headers()
    old = reference_headers(secret="whsec_" + base64.b64encode(b"old-secret").decode())
    headers["Webhook-Signature"] = (
        f"v1,AAAA {old['Webhook-Signature']} {headers['Webhook-Signature']}"
    )
    assert verify_webhook(BODY, headers, SECRET).id == "msg_2x8"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda h, b: (h, b.replace(b"completed", b"failed")), "no signature matches"),
        (lambda h, b: ({**h, "Webhook-Id": "msg_other"}, b), "no signature matches"),
        (
            lambda h, b: ({**h, "Webhook-Signature": "v2," + h["Webhook-Signature"][3:]}, b),
            "no signature matches",
        ),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "Webhook-Signature"}, b),
            "missing header(s): webhook-signature",
        ),
        (lambda h, b: ({**h, "Webhook-Timestamp": "soon"}, b), "not Unix seconds"),
    ],
)
def test_tampered_deliveries_are_refused(
    change: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]], why: str
) -> None:
    headers, body = change(reference_headers(), BODY)
    with pytest.raises(WebhookVerificationError, match=why.replace("(", r"\(").replace(")", r"\)")):
        verify_webhook(body, headers, SECRET)


def test_another_secret_is_refused() -> None:
    other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_webhook(BODY, reference_headers(), other)


def test_old_and_future_timestamps_are_refused_as_replays() -> None:
    now = dt.datetime.now(dt.UTC)
    stale = reference_headers(at=now - dt.timedelta(minutes=6))
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(BODY, stale, SECRET)
    future = reference_headers(at=now + dt.timedelta(minutes=6))
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_webhook(BODY, future, SECRET)
    # Within the tolerance (and with a caller's own clock) it passes.
    assert verify_webhook(BODY, stale, SECRET, now=now - dt.timedelta(minutes=5)).id


def test_a_secret_that_is_not_base64_says_so() -> None:
    with pytest.raises(WebhookVerificationError, match="not base64"):
        verify_webhook(BODY, reference_headers(), "whsec_not*base64")
