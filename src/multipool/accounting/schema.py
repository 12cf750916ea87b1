"""The accounting schema (SQLAlchemy Core), one database per coin.

Money columns are integers in the coin's smallest unit; share difficulties are floats
(weights, never money). Migrations in ``migrations/`` create and evolve these tables;
this module is their description for queries, and a test checks the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.mysql import DOUBLE, MEDIUMTEXT

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# Longest address of any supported coin (bech32 P2WSH/P2TR are 62-64 characters) with room.
ADDRESS = 100
WORKER = 64
# A double everywhere: MySQL/MariaDB's plain FLOAT is single precision, and its text
# protocol hands it back with 6 significant digits (0.0009765625 read as 0.000976562),
# which would change the PPLNS window and the weights on that backend alone.
FLOAT64 = Float().with_variant(DOUBLE(asdecimal=False), "mysql", "mariadb")
# A signed transaction in hex: up to 400,000 weight units is 200 KB of hex, more than
# MySQL/MariaDB's TEXT (64 KB) holds.
HEX = Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")

shares = Table(
    "shares", metadata,
    # Ids only grow: the database assigns them, and spooled shares are replayed in order.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("height", Integer, nullable=False),
    Column("address", String(ADDRESS), nullable=False),
    Column("worker", String(WORKER), nullable=False),
    Column("ip", String(45), nullable=False),
    Column("difficulty", FLOAT64, nullable=False),
    Column("share_difficulty", FLOAT64, nullable=False),
    Column("accepted", Boolean, nullable=False),
    Column("reject_code", Integer),
    Index(None, "time"),
    Index(None, "address", "time"),
)

# The status of a block row written before its submitblock: not a block (yet). Pages,
# status and effort leave such rows out.
CANDIDATE = "candidate"

blocks = Table(
    "blocks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("height", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("address", String(ADDRESS), nullable=False),
    Column("worker", String(WORKER), nullable=False),
    Column("reward", BigInteger, nullable=False),
    Column("network_difficulty", FLOAT64, nullable=False),
    # Sum of share difficulty in the round / network difficulty (1.0 = as expected).
    Column("effort", FLOAT64),
    # The last share of the round: the PPLNS window ends here.
    Column("last_share_id", BigInteger),
    # candidate (stored before submitblock) -> pending -> confirmed | orphaned; a
    # candidate the daemon refused or never got is deleted
    Column("status", String(16), nullable=False, default="pending"),
    Column("confirmations", Integer, nullable=False, default=0),
    # Set once the block's reward snapshot (block_rewards) is written, with its scheme.
    Column("rewards_split", Boolean, nullable=False, default=False,
           server_default=false()),
    Column("scheme", String(8)),
    UniqueConstraint("height", "hash"),
)

block_rewards = Table(
    "block_rewards", metadata,
    Column("block_id", Integer, ForeignKey("blocks.id"), primary_key=True),
    Column("address", String(ADDRESS), primary_key=True),
    Column("amount", BigInteger, nullable=False),
)

balances = Table(
    "balances", metadata,
    Column("address", String(ADDRESS), primary_key=True),
    Column("amount", BigInteger, nullable=False, default=0),
)

ledger = Table(
    "ledger", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("address", String(ADDRESS), nullable=False),
    # Positive credits a balance, negative debits it.
    Column("amount", BigInteger, nullable=False),
    # block_credit | pool_fee | payment | payment_refund | tx_fee | tx_fee_refund |
    # adjustment (bookkeeping.py)
    Column("kind", String(16), nullable=False),
    Column("block_id", Integer, ForeignKey("blocks.id")),
    Column("batch_id", String(36), ForeignKey("payment_batches.id")),
    Column("note", String(200)),
    Index(None, "address", "id"),
)

payment_batches = Table(
    "payment_batches", metadata,
    Column("id", String(36), primary_key=True),
    Column("created", DateTime(timezone=True), nullable=False),
    # intent -> broadcast -> confirmed, or -> voiding -> failed (payments.py); "sent" is
    # a batch paid by sendmany before revision 0004, final.
    Column("status", String(16), nullable=False),
    # Known before anything is broadcast: the signed transaction and its id.
    Column("txid", String(64)),
    Column("total", BigInteger, nullable=False),
    # The network fee, and when the batch reached a final state.
    Column("fee", BigInteger),
    Column("finished", DateTime(timezone=True)),
    Column("error", String(200)),
    Column("raw_tx", HEX),
    # "pool": the fee is charged to fee_account; "miners": shared by the recipients.
    Column("fee_mode", String(8)),
    Column("fee_account", String(ADDRESS)),
    # Depth of txid when last looked at (negative: conflicted that deep).
    Column("confirmations", Integer),
    # Earlier txids of this batch (a fee bump replaced them), comma-separated.
    Column("replaced", Text),
    # The transaction that spends one input of an abandoned payment back to the wallet,
    # recorded before it is broadcast; its burial proves the payment can never confirm.
    Column("void_txid", String(64)),
    Column("void_tx", HEX),
    Column("void_fee", BigInteger),
)

payments = Table(
    "payments", metadata,
    Column("batch_id", String(36), ForeignKey("payment_batches.id"), primary_key=True),
    Column("address", String(ADDRESS), primary_key=True),
    # What the transaction pays the address, and its share of the network fee when the
    # miners pay it; the balance was debited by the sum.
    Column("amount", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False, default=0, server_default="0"),
    # A miner's payments and paid total (the web's miner page).
    Index(None, "address"),
)

payment_inputs = Table(
    "payment_inputs", metadata,
    # The wallet coins a batch's transaction spends: locked while the batch is open.
    Column("batch_id", String(36), ForeignKey("payment_batches.id"), primary_key=True),
    Column("txid", String(64), primary_key=True),
    Column("vout", Integer, primary_key=True, autoincrement=False),
    Index(None, "txid", "vout"),
)

wallet_sends = Table(
    "wallet_sends", metadata,
    # Sends of the pool wallet that no batch explains: payments pause while one is
    # "unknown"; the operator marks it "ignored" (not owed to miners) or "adopted".
    Column("txid", String(64), primary_key=True),
    Column("seen", DateTime(timezone=True), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("note", String(200)),
)

locks = Table(
    "locks", metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(100), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
    # Fencing token: grows on every acquisition, checked by every write of the holder.
    Column("token", BigInteger, nullable=False, default=0, server_default="0"),
)

spool_progress = Table(
    "spool_progress", metadata,
    # How far a share spool file has been replayed, committed with the replayed rows.
    Column("file", String(100), primary_key=True),
    Column("offset", BigInteger, nullable=False),
)

settings = Table(
    "settings", metadata,
    # Per-coin switches shared by every process of the coin, e.g. payments_paused.
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
)

stats_minute = Table(
    "stats_minute", metadata,
    # Shares rolled up per minute, miner and worker: hashrate over any window from here.
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("address", String(ADDRESS), primary_key=True),
    Column("worker", String(WORKER), primary_key=True),
    Column("accepted", Integer, nullable=False),
    Column("accepted_difficulty", FLOAT64, nullable=False),
    Column("rejected", Integer, nullable=False),
    # A miner's minutes, read from the index alone (revision 0007): its page's chart
    # and workers.
    Index("ix_stats_minute_miner", "address", "minute", "worker", "accepted",
          "accepted_difficulty", "rejected"),
)

stats_hour = Table(
    "stats_hour", metadata,
    # stats_minute summed per hour: a ranking of miners over a day reads whole hours
    # here and only the minutes at its two ends from stats_minute.
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("address", String(ADDRESS), primary_key=True),
    Column("worker", String(WORKER), primary_key=True),
    Column("accepted", Integer, nullable=False),
    Column("accepted_difficulty", FLOAT64, nullable=False),
    Column("rejected", Integer, nullable=False),
    # One miner's day (its page) reads its hours by this (revision 0006).
    Index(None, "address", "hour"),
)

stats_pool_minute = Table(
    "stats_pool_minute", metadata,
    # The pool's shares per minute (stats_minute summed over miners and workers): the
    # pool's hashrate over 24 hours reads 1,440 rows instead of every miner's.
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("accepted", Integer, nullable=False),
    Column("accepted_difficulty", FLOAT64, nullable=False),
    Column("rejected", Integer, nullable=False),
)

stats_rejects = Table(
    "stats_rejects", metadata,
    # Rejected shares per minute and stratum error code.
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("reject_code", Integer, primary_key=True),
    Column("count", Integer, nullable=False),
)

stats_miner_rejects = Table(
    "stats_miner_rejects", metadata,
    # Rejected shares per minute, miner and stratum error code: a miner's rejects by
    # reason over a day read at most one row per minute and reason, not its shares.
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("address", String(ADDRESS), primary_key=True),
    Column("reject_code", Integer, primary_key=True),
    Column("count", Integer, nullable=False),
    Index(None, "address", "minute"),
)
