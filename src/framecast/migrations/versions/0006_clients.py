"""Clients: idempotency keys, per-key limits, a rate-limit window, a listing index, NOTIFY.

Idempotency keys, per-key limits, a database rate-limit window, a listing index and
(PostgreSQL) a NOTIFY on every status or progress change for status streams and waits. (The
first paragraph stays on one line: alembic logs it as the migration's name.)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from framecast.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Written out rather than imported: a migration builds the same schema whatever the code is
# later. framecast.queue.status_watch listens on this channel.
STATUS_CHANNEL = "framecast_status"

# Fired by whichever process writes the row (worker, API, another node), so an API node waiting
# on a request hears of it without polling. Lease renewals change none of these columns.
_NOTIFY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION framecast_status_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{STATUS_CHANNEL}', NEW.id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""
_NOTIFY_TRIGGER = """
CREATE TRIGGER requests_status_notify
AFTER UPDATE ON requests
FOR EACH ROW
WHEN (
    OLD.status IS DISTINCT FROM NEW.status
    OR OLD.step IS DISTINCT FROM NEW.step
    OR OLD.phase IS DISTINCT FROM NEW.phase
    OR OLD.progress IS DISTINCT FROM NEW.progress
    OR OLD.cancel_requested_at IS DISTINCT FROM NEW.cancel_requested_at
)
EXECUTE FUNCTION framecast_status_notify()
"""


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "submit_counters",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("submits", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("max_active", sa.Integer, nullable=True))
        batch.add_column(sa.Column("submit_rate", sa.String(32), nullable=True))
    op.create_index("ix_requests_owner_seq", "requests", ["owner", "seq"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_NOTIFY_FUNCTION)
        op.execute(_NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS requests_status_notify ON requests")
        op.execute("DROP FUNCTION IF EXISTS framecast_status_notify()")
    op.drop_index("ix_requests_owner_seq", "requests")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("submit_rate")
        batch.drop_column("max_active")
    op.drop_table("submit_counters")
    op.drop_table("idempotency_keys")
