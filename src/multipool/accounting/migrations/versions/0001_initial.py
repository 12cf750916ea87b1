"""Initial accounting schema: shares, blocks, rewards, balances, ledger, payments, locks,
share spool progress.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("time", TIME, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("difficulty", sa.Float, nullable=False),
        sa.Column("share_difficulty", sa.Float, nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("reject_code", sa.Integer),
        sa.PrimaryKeyConstraint("id", name="pk_shares"),
    )
    op.create_index("ix_shares_time", "shares", ["time"])
    op.create_index("ix_shares_address_time", "shares", ["address", "time"])
    op.create_table(
        "blocks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("time", TIME, nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("reward", sa.BigInteger, nullable=False),
        sa.Column("network_difficulty", sa.Float, nullable=False),
        sa.Column("effort", sa.Float),
        sa.Column("last_share_id", sa.BigInteger),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("confirmations", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_blocks"),
        sa.UniqueConstraint("height", "hash", name="uq_blocks_height_hash"),
    )
    op.create_table(
        "block_rewards",
        sa.Column("block_id", sa.Integer, nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("block_id", "address", name="pk_block_rewards"),
        sa.ForeignKeyConstraint(["block_id"], ["blocks.id"],
                                name="fk_block_rewards_block_id_blocks"),
    )
    op.create_table(
        "balances",
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_balances"),
    )
    op.create_table(
        "payment_batches",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created", TIME, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("txid", sa.String(64)),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payment_batches"),
    )
    op.create_table(
        "payments",
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "address", name="pk_payments"),
        sa.ForeignKeyConstraint(["batch_id"], ["payment_batches.id"],
                                name="fk_payments_batch_id_payment_batches"),
    )
    op.create_table(
        "ledger",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("time", TIME, nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("block_id", sa.Integer),
        sa.Column("batch_id", sa.String(36)),
        sa.Column("note", sa.String(200)),
        sa.PrimaryKeyConstraint("id", name="pk_ledger"),
        sa.ForeignKeyConstraint(["block_id"], ["blocks.id"], name="fk_ledger_block_id_blocks"),
        sa.ForeignKeyConstraint(["batch_id"], ["payment_batches.id"],
                                name="fk_ledger_batch_id_payment_batches"),
    )
    op.create_index("ix_ledger_address_id", "ledger", ["address", "id"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("expires", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )
    op.create_table(
        "spool_progress",
        sa.Column("file", sa.String(100), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("file", name="pk_spool_progress"),
    )


def downgrade() -> None:
    for table in ("spool_progress", "locks", "ledger", "payments", "payment_batches", "balances",
                  "block_rewards", "blocks", "shares"):
        op.drop_table(table)
