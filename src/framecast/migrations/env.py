"""Alembic environment: always run through :func:`framecast.db.migrate` with a live connection."""

from __future__ import annotations

from alembic import context

from framecast.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `framecast db upgrade` (framecast.db.migrate)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
