"""/metrics' history as totals kept by each status change, filled from the requests recorded.

The totals are kept by framecast.queue.request_totals; filled here from the requests already
recorded, so a scrape no longer reads the whole requests table.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Written out rather than imported: a migration builds the same data whatever the code is later.
WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
RUN_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)
GPU_MEMORY_BUCKETS = tuple(g * 1024.0**3 for g in (8, 16, 24, 32, 40, 48, 64, 80, 96, 141))
TERMINAL = ("completed", "failed", "cancelled")
PEAK_GPU_MEMORY_KEY = "peak_gpu_memory_bytes"

_requests = sa.table(
    "requests",
    sa.column("model", sa.String),
    sa.column("status", sa.String),
    sa.column("error_code", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("started_at", sa.DateTime),
    sa.column("finished_at", sa.DateTime),
    sa.column("result", sa.JSON),
)
_totals = sa.table(
    "request_totals",
    sa.column("model"),
    sa.column("status"),
    sa.column("error_code"),
    sa.column("requests"),
)
_histograms = sa.table(
    "request_histograms",
    sa.column("histogram"),
    sa.column("model"),
    sa.column("status"),
    sa.column("le"),
    sa.column("observations"),
    sa.column("total"),
)


def _seconds(dialect: str, later: Any, earlier: Any) -> Any:
    if dialect == "sqlite":  # stored as text; julianday counts days
        value = (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0
    else:
        value = sa.cast(sa.func.extract("epoch", later - earlier), sa.Float)
    return sa.case((value < 0, 0.0), else_=value)  # as the code: never negative


def _fill(name: str, bounds: tuple[float, ...], value: Any, status: Any, where: Any) -> None:
    """Bucket every request ``where`` selects as framecast.queue.request_totals.record would have."""
    r = _requests.c
    le = sa.case(*[(value <= b, sa.literal(repr(b))) for b in bounds], else_=sa.literal("+Inf"))
    rows = (
        sa.select(r.model, status.label("status"), le.label("le"), value.label("value"))
        .where(where)
        .subquery()
    )
    op.execute(
        _histograms.insert().from_select(
            ["histogram", "model", "status", "le", "observations", "total"],
            sa.select(
                sa.literal(name),
                rows.c.model,
                rows.c.status,
                rows.c.le,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(rows.c.value), 0.0),
            ).group_by(rows.c.model, rows.c.status, rows.c.le),
        )
    )


def upgrade() -> None:
    op.create_table(
        "request_totals",
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("error_code", sa.String(64), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "request_histograms",
        sa.Column("histogram", sa.String(16), primary_key=True),
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("le", sa.String(32), primary_key=True),
        sa.Column("observations", sa.BigInteger, nullable=False),
        sa.Column("total", sa.Float, nullable=False),
    )
    # The requests already finished, counted once here (one read of the table, at upgrade).
    # Every process must run this version or later from now on: an older one changes statuses
    # without adding to these totals.
    dialect = op.get_bind().dialect.name
    r = _requests.c
    # Constants as SQL text, not parameters: PostgreSQL matches a GROUP BY by its expression.
    code = sa.func.coalesce(r.error_code, sa.literal_column("''"))
    op.execute(
        _totals.insert().from_select(
            ["model", "status", "error_code", "requests"],
            sa.select(r.model, r.status, code, sa.func.count())
            .where(r.status.in_(TERMINAL))
            .group_by(r.model, r.status, code),
        )
    )
    # The latest start of each request that started; its run, if it finished from running.
    _fill(
        "wait",
        WAIT_BUCKETS,
        _seconds(dialect, r.started_at, r.created_at),
        sa.literal_column("''"),
        r.started_at.is_not(None),
    )
    _fill(
        "run",
        RUN_BUCKETS,
        _seconds(dialect, r.finished_at, r.started_at),
        r.status,
        sa.and_(r.status.in_(TERMINAL), r.started_at.is_not(None), r.finished_at.is_not(None)),
    )
    peak = sa.cast(r.result[("metadata", PEAK_GPU_MEMORY_KEY)].as_float(), sa.Float)
    _fill(
        "gpu_memory",
        GPU_MEMORY_BUCKETS,
        peak,
        sa.literal_column("''"),
        sa.and_(r.status == "completed", peak.is_not(None)),
    )


def downgrade() -> None:
    op.drop_table("request_histograms")
    op.drop_table("request_totals")
