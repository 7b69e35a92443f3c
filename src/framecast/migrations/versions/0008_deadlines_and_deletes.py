"""A request's time-to-start deadline (``X-Fal-Request-Timeout``) and its deletion
(``DELETE /v1/videos/{id}``).

``start_deadline``: a request still queued at this time is cancelled with outcome ``expired``
and never claimed. ``deleted_at``: the owner deleted it; it answers 404 on every route since.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from framecast.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("start_deadline", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("deleted_at", UTCDateTime, nullable=True))
    # The expiry sweep's look-up: queued requests whose deadline has passed.
    op.create_index("ix_requests_status_start_deadline", "requests", ["status", "start_deadline"])


def downgrade() -> None:
    op.drop_index("ix_requests_status_start_deadline", table_name="requests")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("start_deadline")
