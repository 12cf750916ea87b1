"""What the web's pages read fast: the pool's shares per minute (stats_pool_minute)
and each worker's per hour (stats_hour), both filled from stats_minute for the minutes
rolled up so far, and a miner's payments by address.

Revision ID: 0005
Revises: 0004
"""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FLOAT64 = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "stats_pool_minute",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted", sa.Integer, nullable=False),
        sa.Column("accepted_difficulty", FLOAT64, nullable=False),
        sa.Column("rejected", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("minute", name="pk_stats_pool_minute"),
    )
    op.execute("INSERT INTO stats_pool_minute (minute, accepted, accepted_difficulty,"
               " rejected) SELECT minute, SUM(accepted), SUM(accepted_difficulty),"
               " SUM(rejected) FROM stats_minute GROUP BY minute")
    hours = op.create_table(
        "stats_hour",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("accepted", sa.Integer, nullable=False),
        sa.Column("accepted_difficulty", FLOAT64, nullable=False),
        sa.Column("rejected", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("hour", "address", "worker", name="pk_stats_hour"),
    )
    _fill_hours(hours)
    op.create_index("ix_payments_address", "payments", ["address"])


def _fill_hours(hours: sa.Table) -> None:
    """Sum stats_minute per hour in Python: truncating a time to its hour is written
    differently by each backend. Keys compare as the database compares them (MariaDB
    ignores case)."""
    bind = op.get_bind()
    fold = str.lower if bind.dialect.name in ("mysql", "mariadb") else str
    minute = sa.table("stats_minute", sa.column("minute", sa.DateTime(timezone=True)),
                      sa.column("address"), sa.column("worker"), sa.column("accepted"),
                      sa.column("accepted_difficulty"), sa.column("rejected"))
    totals: dict[tuple[datetime, str, str], dict[str, Any]] = {}
    for row in bind.execute(sa.select(minute)):
        time = row.minute if row.minute.tzinfo else row.minute.replace(tzinfo=UTC)
        hour = time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        entry = totals.setdefault((hour, fold(row.address), fold(row.worker)), {
            "hour": hour, "address": row.address, "worker": row.worker, "accepted": 0,
            "accepted_difficulty": 0.0, "rejected": 0})
        entry["accepted"] += row.accepted
        entry["accepted_difficulty"] += row.accepted_difficulty
        entry["rejected"] += row.rejected
    if totals:
        op.bulk_insert(hours, list(totals.values()))


def downgrade() -> None:
    op.drop_index("ix_payments_address", table_name="payments")
    op.drop_table("stats_hour")
    op.drop_table("stats_pool_minute")
