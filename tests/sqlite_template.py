"""A migrated SQLite database to copy, so a test's fresh database skips the migrations.

Running every migration on a new SQLite file took 66 ms here (Alembic loads and runs each
version, 0007 compiles its fills), and the suite makes hundreds of such files: a profile of the
whole suite put about a minute of CPU in ``migrate()``. Each test process migrates one file once
and copies it where a test's database will be; ``migrate()`` then finds the schema current and
returns. The migrations themselves are tests/integration/test_migrations.py's, on files nothing
copied.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from framecast.db import create_db_engine, migrate


@functools.cache
def _template() -> Path:
    folder = tempfile.mkdtemp(prefix="framecast-template-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # not left in /tmp run after run
    path = Path(folder) / "framecast.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection closed: the WAL is folded into the file
    return path


def seed(database: Path) -> None:
    """Put a migrated copy at ``database`` unless a file is already there."""
    if database.exists():
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), database)
