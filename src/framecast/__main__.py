from __future__ import annotations

from framecast.cli import app

app()
