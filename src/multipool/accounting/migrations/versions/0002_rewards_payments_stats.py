"""Reward split marker, payment batch details, per-coin settings, per-minute share stats.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("blocks") as batch:
        batch.add_column(sa.Column("rewards_split", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("scheme", sa.String(8)))
    with op.batch_alter_table("payment_batches") as batch:
        batch.add_column(sa.Column("fee", sa.BigInteger))
        batch.add_column(sa.Column("finished", TIME))
        batch.add_column(sa.Column("error", sa.String(200)))
    op.create_table(
        "settings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_settings"),
    )
    op.create_table(
        "stats_minute",
        sa.Column("minute", TIME, nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("accepted", sa.Integer, nullable=False),
        sa.Column("accepted_difficulty", sa.Float, nullable=False),
        sa.Column("rejected", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("minute", "address", "worker", name="pk_stats_minute"),
    )
    op.create_index("ix_stats_minute_address_minute", "stats_minute", ["address", "minute"])
    op.create_table(
        "stats_rejects",
        sa.Column("minute", TIME, nullable=False),
        sa.Column("reject_code", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("minute", "reject_code", name="pk_stats_rejects"),
    )


def downgrade() -> None:
    for table in ("stats_rejects", "stats_minute", "settings"):
        op.drop_table(table)
    with op.batch_alter_table("payment_batches") as batch:
        for column in ("error", "finished", "fee"):
            batch.drop_column(column)
    with op.batch_alter_table("blocks") as batch:
        for column in ("scheme", "rewards_split"):
            batch.drop_column(column)
