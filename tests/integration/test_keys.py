from __future__ import annotations

from sqlalchemy import Engine, select

from framecast.admission.keys import KeyStore, hash_key
from framecast.db import api_keys


def test_created_key_authenticates_and_only_its_hash_is_stored(db: Engine) -> None:
    store = KeyStore(db)
    new = store.create("alice")
    assert new.secret.startswith("fc_") and len(new.secret) > 40
    assert store.owner_for(new.secret) == new.record.id
    with db.connect() as conn:
        stored = conn.execute(select(api_keys)).mappings().one()
    assert stored["key_hash"] == hash_key(new.secret)
    assert new.secret not in str(dict(stored))


def test_revoked_key_stops_working(db: Engine) -> None:
    store = KeyStore(db)
    new = store.create("bob")
    assert store.revoke(new.record.id)
    assert store.owner_for(new.secret) is None
    assert not store.revoke(new.record.id)
    assert store.list()[0].revoked_at is not None


def test_environment_keys_have_stable_distinct_owners(db: Engine) -> None:
    a = KeyStore(db, ["key-one", "key-two"])
    b = KeyStore(db, ["key-two"])
    assert a.owner_for("key-one") != a.owner_for("key-two")
    assert a.owner_for("key-two") == b.owner_for("key-two")
    assert a.owner_for("key-three") is None
