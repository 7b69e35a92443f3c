"""What ``serve --dev`` (``make run``) prints: a development key, its webhook secret, and a curl
example that works as shown."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from framecast.admission.keys import KeyStore
from framecast.models import all_models
from framecast.settings import Settings

SAMPLE_IMAGE = Path(__file__).parents[1] / "assets" / "sample.jpg"
DEV_KEY_NAME = "development (serve --dev)"


@dataclass(frozen=True)
class DevKey:
    secret: str
    key_id: str
    webhook_secret: str | None
    """Signs the webhook deliveries of this key's requests (None: the server has no secret to
    derive an environment key's from, which the API's own store always has)."""


def dev_key(settings: Settings, keys: KeyStore) -> DevKey:
    """The first configured key, else a key kept in data_dir/dev-key (created once, and again
    when the database no longer knows it: a deleted database, a revoked key)."""
    path = settings.data_dir / "dev-key"
    if settings.api_keys:
        secret: str | None = settings.api_keys[0]
    else:
        secret = path.read_text().strip() if path.exists() else None
    owner = keys.owner_for(secret) if secret else None
    if secret is None or owner is None:
        new = keys.create(DEV_KEY_NAME)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new.secret + "\n")
        return DevKey(new.secret, new.record.id, new.webhook_secret)
    signing = keys.webhook_secrets(owner)
    return DevKey(secret, owner, signing[0] if signing else None)


def print_dev_banner(settings: Settings, keys: KeyStore, port: int) -> None:
    """``port``: the one listened on (FRAMECAST_PORT=0 picks a free one)."""
    key = dev_key(settings, keys)
    host = "127.0.0.1" if settings.host in {"0.0.0.0", "::"} else settings.host
    base = settings.public_base_url or f"http://{host}:{port}"
    # The first model listed, as `framecast generate` defaults to.
    model = all_models(settings)[0]
    print(
        f"""
framecast is starting on {base}  (engine: {settings.engine}, workers: {settings.workers})
data folder: {settings.data_dir.resolve()}

  development API key:  {key.secret}
  its key id:           {key.key_id}
  its webhook secret:   {key.webhook_secret or "(none)"}  (verifies the webhooks its requests send)

Try it (the image is sent inline as a data: URI, so this works offline):

  KEY={key.secret}
  IMG=$(base64 < {SAMPLE_IMAGE} | tr -d '\\n')
  curl -s -X POST {base}/v1/models/{model.id} \\
    -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
    -d "{{\\"prompt\\": \\"slow push in on the harbour at dusk\\", \\"{model.input.image_field}\\": \\"data:image/jpeg;base64,$IMG\\"}}"

  then poll the status_url it returns, and fetch the result_url:
  curl -s -H "Authorization: Bearer $KEY" {base}/v1/requests/<request_id>/result

  or with the CLI:  FRAMECAST_KEY=$KEY framecast submit IMAGE --prompt "..." --server {base}
""",
        flush=True,
    )
