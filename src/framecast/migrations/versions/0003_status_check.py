"""The database refuses a request status outside the state machine.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from framecast.db import STATUS_CHECK, status_check_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Written out, not read from framecast.states: a migration must build the same schema whatever
# the code is later. A new status needs a new migration that replaces this constraint
# (tests/integration/test_migrations.py fails until it exists).
STATUSES = ("in_queue", "in_progress", "completed", "failed", "cancelled")


def upgrade() -> None:
    # SQLite cannot add a constraint to a table: batch mode copies it into a new one.
    with op.batch_alter_table("requests") as batch:
        batch.create_check_constraint(STATUS_CHECK, status_check_sql(STATUSES))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_constraint(STATUS_CHECK, type_="check")
