"""Webhook secrets and signatures, per Standard Webhooks (https://www.standardwebhooks.com).

A secret is ``whsec_`` and the base64 of 32 random bytes; a signature is ``v1,`` and the base64
HMAC-SHA256 of ``{id}.{timestamp}.{body}``. The signing itself is the client's
(:func:`framecast.client.webhooks.sign`): sender and verifier cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from framecast.client.webhooks import SECRET_PREFIX, sign

SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def env_key_secret(server_key: bytes, owner: str) -> str:
    """The webhook secret of a key given in FRAMECAST_API_KEYS (it has no database row to keep
    one in): derived from the server's secret and the key's owner id, so every node derives the
    same one and nobody without the server's secret can."""
    digest = hmac.new(server_key, b"framecast webhook secret\x00" + owner.encode(), hashlib.sha256)
    return SECRET_PREFIX + base64.b64encode(digest.digest()).decode()


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: one ``v1,...`` per secret, space-separated (two while a secret is
    being rotated, so receivers holding either one accept the delivery)."""
    if not secrets_:
        raise ValueError("a delivery needs at least one secret to be signed with")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets_)
