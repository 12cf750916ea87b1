"""Payments whose transaction id is known before anything is broadcast: the signed
transaction, its inputs and fee mode in the batch, each recipient's share of the fee, a
fencing token on locks, and the wallet sends no batch explains.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

HEX = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
BATCH_COLUMNS: list[sa.Column[object]] = [
    sa.Column("raw_tx", HEX),
    sa.Column("fee_mode", sa.String(8)),
    sa.Column("fee_account", sa.String(100)),
    sa.Column("confirmations", sa.Integer),
    sa.Column("replaced", sa.Text),
    sa.Column("void_txid", sa.String(64)),
    sa.Column("void_tx", HEX),
    sa.Column("void_fee", sa.BigInteger),
]


def upgrade() -> None:
    with op.batch_alter_table("payment_batches") as batch:
        for column in BATCH_COLUMNS:
            batch.add_column(column)
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("fee", sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("locks") as batch:
        batch.add_column(sa.Column("token", sa.BigInteger, nullable=False,
                                   server_default="0"))
    op.create_table(
        "payment_inputs",
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("txid", sa.String(64), nullable=False),
        sa.Column("vout", sa.Integer, nullable=False, autoincrement=False),
        sa.PrimaryKeyConstraint("batch_id", "txid", "vout", name="pk_payment_inputs"),
        sa.ForeignKeyConstraint(["batch_id"], ["payment_batches.id"],
                                name="fk_payment_inputs_batch_id_payment_batches"),
    )
    op.create_index("ix_payment_inputs_txid_vout", "payment_inputs", ["txid", "vout"])
    op.create_table(
        "wallet_sends",
        sa.Column("txid", sa.String(64), nullable=False),
        sa.Column("seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.String(200)),
        sa.PrimaryKeyConstraint("txid", name="pk_wallet_sends"),
    )


def downgrade() -> None:
    op.drop_table("wallet_sends")
    op.drop_index("ix_payment_inputs_txid_vout", table_name="payment_inputs")
    op.drop_table("payment_inputs")
    with op.batch_alter_table("locks") as batch:
        batch.drop_column("token")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("fee")
    with op.batch_alter_table("payment_batches") as batch:
        for column in reversed(BATCH_COLUMNS):
            batch.drop_column(column.name)
