"""Fresh PostgreSQL schemas for tests: one per test, or per module's server."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def _run(pg_url: str, statement: str) -> None:
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(statement))
    admin.dispose()


def create_schema(pg_url: str, prefix: str) -> tuple[str, Callable[[], None]]:
    """A new, empty schema on the server at ``pg_url``: the URL whose connections use it, and
    the call that drops it."""
    schema = f"{prefix}_{secrets.token_hex(6)}"
    _run(pg_url, f"CREATE SCHEMA {schema}")
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), partial(
        _run, pg_url, f"DROP SCHEMA {schema} CASCADE"
    )
