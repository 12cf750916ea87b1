"""What the web's pages read fast: the pool's shares per minute (stats_pool_minute,
filled from stats_minute for the minutes rolled up so far) and a miner's payments by
address.

Revision ID: 0005
Revises: 0004
"""

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
    op.create_index("ix_payments_address", "payments", ["address"])


def downgrade() -> None:
    op.drop_index("ix_payments_address", table_name="payments")
    op.drop_table("stats_pool_minute")
