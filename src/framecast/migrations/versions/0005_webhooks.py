"""Webhooks: each request's target, an outbox of deliveries, and a signing secret per API key.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from framecast.db import BigInt, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A table of its own rather than columns on requests: the request row (and its Job) stays
    # as it is, and only requests submitted with ?webhook= have a row here.
    op.create_table(
        "request_webhooks",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("base_url", sa.Text, nullable=False),
        sa.Column("intermediate", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_expires_at", UTCDateTime),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_state"
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_state_next", "webhook_deliveries", ["state", "next_attempt_at"]
    )
    op.create_index("ix_webhook_deliveries_request", "webhook_deliveries", ["request_id"])
    with op.batch_alter_table("api_keys") as batch:
        # Stored as given (an HMAC needs the secret itself); keys made before this migration
        # have none until `framecast keys rotate-webhook-secret` gives them one.
        batch.add_column(sa.Column("webhook_secret", sa.String(100), nullable=True))
        batch.add_column(sa.Column("previous_webhook_secret", sa.String(100), nullable=True))
        batch.add_column(sa.Column("previous_webhook_secret_until", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("previous_webhook_secret_until")
        batch.drop_column("previous_webhook_secret")
        batch.drop_column("webhook_secret")
    op.drop_index("ix_webhook_deliveries_request", "webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_state_next", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("request_webhooks")
