"""API keys: created with the CLI and stored hashed, or given in ``FRAMECAST_API_KEYS``.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them: there is nothing
to brute-force, and a slow password hash would add its cost to every API call.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

from framecast.db import api_keys, utcnow

KEY_PREFIX = "fc_"


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


class KeyStore:
    def __init__(self, engine: Engine, env_keys: Iterable[str] = ()) -> None:
        self.engine = engine
        # An environment key's owner id is derived from its hash, so the same key owns the same
        # requests across restarts and across API nodes.
        self._env_owners = {hash_key(k): "env_" + hash_key(k)[:16] for k in env_keys}

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
                )
            )
        return NewKey(record, secret)

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
