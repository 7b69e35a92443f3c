from __future__ import annotations

from framecast.cli.main import app

app()
