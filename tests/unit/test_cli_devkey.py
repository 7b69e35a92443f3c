"""The development key of `serve --dev`: kept across restarts, made again when the database no
longer knows it, and shown with the key id and webhook secret its requests' webhooks use."""

from __future__ import annotations

from pathlib import Path

from framecast.admission.keys import KeyStore
from framecast.cli.devkey import DEV_KEY_NAME, dev_key
from framecast.db import create_db_engine, migrate
from framecast.settings import Settings


def _keys(settings: Settings) -> KeyStore:
    db = create_db_engine(settings.resolved_database_url)
    migrate(db)
    return KeyStore(db, settings.api_keys, server_key=settings.signing_key())


def test_the_dev_key_is_kept_and_made_again_once_revoked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    keys = _keys(settings)
    first = dev_key(settings, keys)
    assert keys.owner_for(first.secret) == first.key_id
    assert first.webhook_secret is not None
    assert keys.webhook_secrets(first.key_id) == (first.webhook_secret,)
    assert [k.name for k in keys.list()] == [DEV_KEY_NAME]
    assert dev_key(settings, keys) == first  # a restart shows the same key and secret

    keys.revoke(first.key_id)
    second = dev_key(settings, keys)
    assert second.secret != first.secret and keys.owner_for(second.secret) == second.key_id


def test_a_configured_key_is_shown_with_its_derived_webhook_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_keys=["fc_configured"])
    keys = _keys(settings)
    shown = dev_key(settings, keys)
    assert shown.secret == "fc_configured" and keys.list() == []
    assert keys.owner_for("fc_configured") == shown.key_id
    # What `framecast keys env-webhook-secrets` prints for it: what signs its webhooks.
    assert keys.env_webhook_secrets(["fc_configured"])[0][1] == shown.webhook_secret
