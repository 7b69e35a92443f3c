"""framecast runs on SQLite and PostgreSQL only, and what differs between them is written in
framecast.db (the package's engine set-up and its backend module), nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

from framecast.cli.main import app as cli_app
from framecast.db import create_db_engine
from framecast.startup import EXIT_CONFIG, StartupError

SRC = Path(__file__).parents[2] / "src" / "framecast"
BACKEND_MODULES = {Path("db/__init__.py"), Path("db/backend.py")}
MIGRATIONS = Path("migrations")
"""Not held to it: a migration is history, and runs the SQL of its day on each database
whatever the backend module says today."""


def _dialect_branches(path: Path) -> list[str]:
    """What in ``path`` depends on which database it runs on, as ``line: what``."""
    tree = ast.parse(path.read_text())
    docstrings = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Attribute) and node.attr in {"dialect", "get_backend_name"}:
            what = f".{node.attr}"
        elif isinstance(node, ast.Attribute) and node.attr == "with_for_update":
            what = "with_for_update (see backend.skip_locked)"
        elif isinstance(node, ast.Constant) and node.value in {"postgresql", "sqlite"}:
            what = f"the name {node.value!r}"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            ("sqlalchemy.dialects", "psycopg")
        ):
            what = f"from {node.module} import"
        elif isinstance(node, ast.Import) and any(
            a.name.startswith(("psycopg", "sqlalchemy.dialects")) for a in node.names
        ):
            what = "import " + ", ".join(a.name for a in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and any(word in node.value for word in ("pg_notify", "LISTEN ", "NOTIFY "))
            and id(node) not in docstrings
        ):
            what = f"SQL {node.value[:40]!r}"
        if what is not None:
            found.append(f"{getattr(node, 'lineno', '?')}: {what}")
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """The string constants that stand alone (docstrings, and the notes under constants)."""
    return {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}


def test_dialect_branches_are_only_in_the_db_backend() -> None:
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative in BACKEND_MODULES or relative.parts[0] == MIGRATIONS.name:
            continue
        found = _dialect_branches(path)
        if found:
            offenders[str(relative)] = found
    assert offenders == {}, "use framecast.db.backend's helpers (upsert, skip_locked, notify, ...)"


def test_the_rule_sees_a_dialect_branch(tmp_path: Path) -> None:
    """The scan above finds each kind of branch it looks for (else it would pass for nothing)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from sqlalchemy.dialects import postgresql\n"
        "if conn.dialect.name == 'postgresql':\n"
        "    q = q.with_for_update(skip_locked=True)\n"
        "conn.execute(text(\"SELECT pg_notify('c', '')\"))\n"
    )
    assert [line.split(":")[0] for line in _dialect_branches(sample)] == ["1", "2", "2", "3", "4"]


def test_a_database_that_is_neither_sqlite_nor_postgresql_is_refused_in_one_line() -> None:
    with pytest.raises(StartupError) as refused:
        create_db_engine("mysql+pymysql://framecast:hunter2@db.internal:3306/framecast")
    message = refused.value.message
    assert "\n" not in message
    assert "mysql+pymysql://framecast:***@db.internal:3306/framecast" in message  # what was given
    assert "hunter2" not in message
    assert "sqlite:///" in message and "postgresql+psycopg://" in message  # what it takes
    assert refused.value.exit_code == EXIT_CONFIG


def test_an_unparsable_database_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(StartupError) as refused:
        create_db_engine("not a url, secret hunter2")
    assert "hunter2" not in refused.value.message and "\n" not in refused.value.message


def test_a_worker_given_a_mysql_url_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAMECAST_DATABASE_URL", "mysql://fc:hunter2@localhost/fc")
    result = CliRunner().invoke(
        cli_app, ["worker", "--engine", "preview", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == EXIT_CONFIG, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "mysql://" in lines[0]
    assert "hunter2" not in result.output
