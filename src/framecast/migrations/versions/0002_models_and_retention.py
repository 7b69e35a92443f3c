"""Workers declare the API models they serve; requests record when their files were removed.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from framecast.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("serves", sa.JSON, nullable=True))
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("data_removed_at", UTCDateTime, nullable=True))
    op.create_index("ix_requests_finished_at", "requests", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_finished_at", "requests")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("data_removed_at")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("serves")
