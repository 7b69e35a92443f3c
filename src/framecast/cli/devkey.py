"""What ``make run`` prints: a development key and a curl example that works as shown."""

from __future__ import annotations

import os
from pathlib import Path

from framecast.admission.keys import KeyStore
from framecast.db import create_db_engine, migrate
from framecast.models import all_models
from framecast.settings import Settings

SAMPLE_IMAGE = Path(__file__).parent / "assets" / "sample.jpg"


def dev_key(settings: Settings) -> str:
    """The first configured key, else a key kept in data_dir/dev-key (created once)."""
    if settings.api_keys:
        return settings.api_keys[0]
    path = settings.data_dir / "dev-key"
    if path.exists():
        return path.read_text().strip()
    db = create_db_engine(settings.resolved_database_url)
    migrate(db)
    secret = KeyStore(db).create("development (make run)").secret
    db.dispose()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def print_dev_banner(settings: Settings) -> None:
    key = dev_key(settings)
    host = "127.0.0.1" if settings.host in {"0.0.0.0", "::"} else settings.host
    base = settings.public_base_url or f"http://{host}:{settings.port}"
    # The first model listed, as `framecast generate` defaults to.
    model = all_models()[0]
    print(
        f"""
framecast is starting on {base}  (engine: {settings.engine}, workers: {settings.workers})

  development API key:  {key}

Try it (the image is sent inline as a data: URI, so this works offline):

  KEY={key}
  IMG=$(base64 < {SAMPLE_IMAGE} | tr -d '\\n')
  curl -s -X POST {base}/v1/models/{model.id} \\
    -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
    -d "{{\\"prompt\\": \\"slow push in on the harbour at dusk\\", \\"{model.input.image_field}\\": \\"data:image/jpeg;base64,$IMG\\"}}"

  then poll the status_url it returns, and fetch the result_url:
  curl -s -H "Authorization: Bearer $KEY" {base}/v1/requests/<request_id>/result
""",
        flush=True,
    )
