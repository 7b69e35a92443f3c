"""Webhook secrets and signatures, per Standard Webhooks (https://www.standardwebhooks.com).

A secret (made with its API key: :mod:`framecast.admission.keys`) is ``whsec_`` and the base64
of 32 random bytes; a signature is ``v1,`` and the base64 HMAC-SHA256 of
``{id}.{timestamp}.{body}``. The signing itself is the client's
(:func:`framecast.client.webhooks.sign`): sender and verifier cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from framecast.client.webhooks import sign


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: one ``v1,...`` per secret, space-separated (two while a secret is
    being rotated, so receivers holding either one accept the delivery)."""
    if not secrets_:
        raise ValueError("a delivery needs at least one secret to be signed with")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets_)
