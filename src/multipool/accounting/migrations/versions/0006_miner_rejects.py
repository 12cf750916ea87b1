"""A miner's rejected shares per minute and reason (stats_miner_rejects), so that its
page reads a day of rejects from at most one row per minute and reason instead of its
shares; filled from the shares table for the minutes rolled up so far. And an index on
stats_hour by address: a miner's page reads its day's whole hours there.

Revision ID: 0006
Revises: 0005
"""

from collections import Counter
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The stratum code of a share rejected for a reason without its own code
# (stratum/protocol.py OTHER), as the roll-up records it.
OTHER = 20


def upgrade() -> None:
    table = op.create_table(
        "stats_miner_rejects",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("reject_code", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("minute", "address", "reject_code",
                                name="pk_stats_miner_rejects"),
    )
    op.create_index("ix_stats_miner_rejects_address_minute", "stats_miner_rejects",
                    ["address", "minute"])
    _fill(table)
    op.create_index("ix_stats_hour_address_hour", "stats_hour", ["address", "hour"])


def _fill(table: sa.Table) -> None:
    """Count the rejected shares already rolled up (ids up to the roll-up's progress)
    per minute, address and code, from the oldest minute stats_rejects still holds
    (older ones were pruned there). Minutes are cut in Python: truncating a time to its
    minute is written differently by each backend. Addresses compare as the database
    compares them (MariaDB ignores case)."""
    bind = op.get_bind()
    fold = str.lower if bind.dialect.name in ("mysql", "mariadb") else str
    settings = sa.table("settings", sa.column("name"), sa.column("value"))
    progress = bind.execute(sa.select(settings.c.value).where(
        settings.c.name == "stats_last_share_id")).scalar()
    rejects = sa.table("stats_rejects", sa.column("minute", sa.DateTime(timezone=True)))
    oldest = bind.execute(sa.select(sa.func.min(rejects.c.minute))).scalar()
    if progress is None or oldest is None:
        return
    shares = sa.table("shares", sa.column("id"), sa.column("time", sa.DateTime(timezone=True)),
                      sa.column("address"), sa.column("accepted", sa.Boolean),
                      sa.column("reject_code"))
    counts: Counter[tuple[datetime, str, int]] = Counter()
    spelled: dict[tuple[datetime, str, int], str] = {}  # the address as first seen
    for row in bind.execute(
            sa.select(shares.c.time, shares.c.address, shares.c.reject_code)
            .where(shares.c.id <= int(progress), shares.c.accepted == sa.false(),
                   shares.c.time >= oldest)):
        time = row.time if row.time.tzinfo else row.time.replace(tzinfo=UTC)
        key = (time.astimezone(UTC).replace(second=0, microsecond=0), fold(row.address),
               row.reject_code or OTHER)
        counts[key] += 1
        spelled.setdefault(key, row.address)
    if counts:
        op.bulk_insert(table, [{"minute": key[0], "address": spelled[key],
                                "reject_code": key[2], "count": count}
                               for key, count in counts.items()])


def downgrade() -> None:
    op.drop_index("ix_stats_hour_address_hour", table_name="stats_hour")
    op.drop_index("ix_stats_miner_rejects_address_minute", table_name="stats_miner_rejects")
    op.drop_table("stats_miner_rejects")
