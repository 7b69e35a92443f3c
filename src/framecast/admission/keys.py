"""API keys: created with the CLI and stored hashed, or given in ``FRAMECAST_API_KEYS``.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them: there is nothing
to brute-force, and a slow password hash would add its cost to every API call.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

from framecast.client.webhooks import SECRET_PREFIX
from framecast.db import api_keys, utcnow

SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def env_key_secret(server_key: bytes, owner: str) -> str:
    """The webhook secret of a key given in FRAMECAST_API_KEYS (it has no database row to keep
    one in): derived from the server's secret and the key's owner id, so every node derives the
    same one and nobody without the server's secret can."""
    digest = hmac.new(server_key, b"framecast webhook secret\x00" + owner.encode(), hashlib.sha256)
    return SECRET_PREFIX + base64.b64encode(digest.digest()).decode()


KEY_PREFIX = "fc_"
ENV_OWNER_PREFIX = "env_"
ROTATION_OVERLAP = dt.timedelta(hours=24)
"""How long a rotated-out webhook secret keeps signing beside the new one by default: as long
as a delivery may be retried, so no delivery in flight is signed only with a secret the
receiver has already dropped."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class NewKey:
    record: KeyRecord
    secret: str
    """Shown once, never stored."""
    webhook_secret: str
    """Signs this key's webhook deliveries; shown once (stored, since signing needs it)."""


class UnknownKey(LookupError):
    pass


def env_webhook_secrets(server_key: bytes, env_keys: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``(key prefix, webhook secret)`` of each FRAMECAST_API_KEYS key: derived from the server's
    secret alone, no database read."""
    return tuple(
        (key[:10], env_key_secret(server_key, ENV_OWNER_PREFIX + hash_key(key)[:16]))
        for key in env_keys
    )


class KeyStore:
    def __init__(
        self, engine: Engine, env_keys: Iterable[str] = (), server_key: bytes | None = None
    ) -> None:
        """``server_key``: the server's secret (Settings.signing_key()), from which the webhook
        secrets of FRAMECAST_API_KEYS keys are derived; without it they have none."""
        self.engine = engine
        self._server_key = server_key
        # An environment key's owner id is derived from its hash, so the same key owns the same
        # requests across restarts and across API nodes.
        self._env_owners = {hash_key(k): ENV_OWNER_PREFIX + hash_key(k)[:16] for k in env_keys}

    def owner_for(self, presented: str) -> str | None:
        """The owner id for a presented key, or None when it is unknown or revoked."""
        digest = hash_key(presented)
        for known, owner in self._env_owners.items():
            if hmac.compare_digest(known, digest):
                return owner
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_keys.c.id).where(
                    api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None)
                )
            ).one_or_none()
        return row.id if row is not None else None

    def create(self, name: str) -> NewKey:
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        webhook_secret = new_secret()
        record = KeyRecord(
            id="key_" + secrets.token_hex(8),
            name=name,
            prefix=secret[:10],
            created_at=utcnow(),
            revoked_at=None,
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    id=record.id,
                    name=record.name,
                    prefix=record.prefix,
                    key_hash=hash_key(secret),
                    created_at=record.created_at,
                    webhook_secret=webhook_secret,
                )
            )
        return NewKey(record, secret, webhook_secret)

    def list(self) -> list[KeyRecord]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(
                        api_keys.c.id,
                        api_keys.c.name,
                        api_keys.c.prefix,
                        api_keys.c.created_at,
                        api_keys.c.revoked_at,
                    ).order_by(api_keys.c.created_at)
                )
                .mappings()
                .all()
            )
        return [KeyRecord(**row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            ).rowcount
        return bool(changed == 1)

    # -- webhook secrets ----------------------------------------------------------------------

    def webhook_secrets(self, owner: str, now: dt.datetime | None = None) -> tuple[str, ...]:
        """The secrets that sign ``owner``'s deliveries now: the current one, then the previous
        one while its overlap lasts; empty when the key has none (made before webhooks)."""
        if owner.startswith(ENV_OWNER_PREFIX):
            return (env_key_secret(self._server_key, owner),) if self._server_key else ()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    api_keys.c.webhook_secret,
                    api_keys.c.previous_webhook_secret,
                    api_keys.c.previous_webhook_secret_until,
                ).where(api_keys.c.id == owner)
            ).one_or_none()
        if row is None or row.webhook_secret is None:
            return ()
        until = row.previous_webhook_secret_until
        if row.previous_webhook_secret and until is not None and until > (now or utcnow()):
            return (row.webhook_secret, row.previous_webhook_secret)
        return (row.webhook_secret,)

    def env_webhook_secrets(self, env_keys: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """``(key prefix, webhook secret)`` of each FRAMECAST_API_KEYS key."""
        if self._server_key is None:
            raise ValueError("KeyStore needs the server's secret to derive these")
        return env_webhook_secrets(self._server_key, env_keys)

    def rotate_webhook_secret(self, key_id: str, overlap: dt.timedelta = ROTATION_OVERLAP) -> str:
        """Give the key a new webhook secret and return it (shown once). The old one keeps
        signing beside it for ``overlap`` (zero: it stops at once, e.g. after a leak)."""
        if key_id.startswith(ENV_OWNER_PREFIX):
            raise UnknownKey(
                f"{key_id} is a FRAMECAST_API_KEYS key: its webhook secret is derived from the "
                "server's secret; create a key with `framecast keys create` for a rotatable one"
            )
        fresh = new_secret()
        now = utcnow()
        with self.engine.begin() as conn:
            current = conn.execute(
                select(api_keys.c.webhook_secret).where(
                    api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)
                )
            ).one_or_none()
            if current is None:
                raise UnknownKey(f"no active key with id {key_id} (see `framecast keys list`)")
            keep = current.webhook_secret is not None and overlap > dt.timedelta(0)
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(
                    webhook_secret=fresh,
                    previous_webhook_secret=current.webhook_secret if keep else None,
                    previous_webhook_secret_until=now + overlap if keep else None,
                )
            )
        return fresh
