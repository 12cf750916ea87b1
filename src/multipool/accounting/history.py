"""Blocks, payments and a miner's money, as the web pages list them (read-only queries).

Lists come a page at a time, newest first, with the number of rows in the whole list.
Each function takes a synchronous connection; ``stats.read`` runs one on an async engine.
Block candidates (rows written before their submitblock) are not blocks yet and are left
out everywhere. A miner's money, in the coin's smallest unit:

- *immature*: its credits in the reward snapshot (``block_rewards``) of blocks still
  pending, which become balance once the block is confirmed (or nothing if orphaned);
- *unpaid*: its balance (``balances``): credited and not yet sent;
- *paid*: what payment batches that were broadcast or confirmed sent it (``sent`` is a
  batch paid before revision 0004, final too). A batch still an intent was never seen
  by the network, and a voiding or failed one is being or was credited back, so neither
  counts as paid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    bindparam,
    exists,
    func,
    select,
)

from multipool.accounting.schema import (
    CANDIDATE,
    balances,
    block_rewards,
    blocks,
    ledger,
    payment_batches,
    payments,
    shares,
)
from multipool.accounting.stats import as_utc

# The states of a batch whose transaction reached the network and stays paid.
PAID_STATES = ("broadcast", "confirmed", "sent")


@dataclass(frozen=True, slots=True)
class BlockEntry:
    id: int
    height: int
    hash: str
    time: datetime
    status: str
    reward: int
    effort: float | None
    address: str
    worker: str


@dataclass(frozen=True, slots=True)
class BatchEntry:
    id: str
    created: datetime
    txid: str | None
    status: str
    total: int
    fee: int
    recipients: int


@dataclass(frozen=True, slots=True)
class MinerPaymentEntry:
    batch_id: str
    created: datetime
    txid: str | None
    status: str
    amount: int


@dataclass(frozen=True, slots=True)
class MinerMoney:
    immature: int
    unpaid: int
    paid: int


def _not_candidate() -> ColumnElement[bool]:
    return blocks.c.status != CANDIDATE


def _page(connection: Connection, query: Select[Any], count: Select[Any],
          values: dict[str, Any] | None = None) -> tuple[Sequence[Row[Any]], int]:
    rows = connection.execute(query, values).all()
    return rows, int(connection.execute(count, values).scalar_one())


def _block(row: Any) -> BlockEntry:
    r = row._mapping
    return BlockEntry(id=r["id"], height=r["height"], hash=r["hash"], time=as_utc(r["time"]),
                      status=r["status"], reward=int(r["reward"]),
                      effort=None if r["effort"] is None else float(r["effort"]),
                      address=r["address"], worker=r["worker"])


_BLOCK_COLUMNS = (blocks.c.id, blocks.c.height, blocks.c.hash, blocks.c.time,
                  blocks.c.status, blocks.c.reward, blocks.c.effort, blocks.c.address,
                  blocks.c.worker)


def block_page(connection: Connection, *, limit: int,
               offset: int) -> tuple[list[BlockEntry], int]:
    """One page of the pool's blocks, newest (highest) first, and how many there are."""
    rows, total = _page(
        connection,
        select(*_BLOCK_COLUMNS).where(_not_candidate())
        .order_by(blocks.c.height.desc(), blocks.c.id.desc()).limit(limit).offset(offset),
        select(func.count()).select_from(blocks).where(_not_candidate()))
    return [_block(row) for row in rows], total


def newest_block(connection: Connection) -> BlockEntry | None:
    """The block found last (the highest id, as the round starts after it)."""
    row = connection.execute(
        select(*_BLOCK_COLUMNS).where(_not_candidate())
        .order_by(blocks.c.id.desc()).limit(1)).first()
    return None if row is None else _block(row)


def blocks_since(connection: Connection, since: datetime) -> int:
    """Blocks found since a time, orphans and candidates left out (as status.json)."""
    return int(connection.execute(
        select(func.count()).select_from(blocks)
        .where(blocks.c.time >= since,
               blocks.c.status.not_in(("orphaned", CANDIDATE)))).scalar_one())


def batch_page(connection: Connection, *, limit: int,
               offset: int) -> tuple[list[BatchEntry], int]:
    """One page of the pool's payment batches, newest first, and how many there are."""
    # The page first, then its recipients counted: counting every batch's before the
    # sort would read every payment row.
    page = (select(payment_batches.c.id, payment_batches.c.created, payment_batches.c.txid,
                   payment_batches.c.status, payment_batches.c.total, payment_batches.c.fee)
            .order_by(payment_batches.c.created.desc(), payment_batches.c.id)
            .limit(limit).offset(offset).subquery())
    recipients = (select(func.count()).select_from(payments)
                  .where(payments.c.batch_id == page.c.id).scalar_subquery())
    rows, total = _page(
        connection,
        select(page, recipients.label("recipients"))
        .order_by(page.c.created.desc(), page.c.id),
        select(func.count()).select_from(payment_batches))
    return [BatchEntry(id=r.id, created=as_utc(r.created), txid=r.txid,
                       status=r.status, total=int(r.total),
                       fee=int(r.fee or 0), recipients=int(r.recipients))
            for r in rows], total


def miner_payment_page(connection: Connection, address: str, *, limit: int,
                       offset: int) -> tuple[list[MinerPaymentEntry], int]:
    """One page of what the batches paid one address, newest first, and how many."""
    rows, total = _page(connection, _MINER_PAYMENTS, _MINER_PAYMENT_COUNT,
                        {"address": address, "limit": limit, "offset": offset})
    return [MinerPaymentEntry(batch_id=r.batch_id, created=as_utc(r.created),
                              txid=r.txid, status=r.status,
                              amount=int(r.amount))
            for r in rows], total


def miner_money(connection: Connection, address: str) -> MinerMoney:
    """One address's immature, unpaid and paid amounts (see the module's docstring)."""
    values = {"address": address}
    return MinerMoney(*(int(connection.execute(query, values).scalar_one())
                        for query in (_IMMATURE, _UNPAID, _PAID)))


# A miner's page runs these: built once, the address and page as parameters (building a
# statement costs more than SQLite takes to answer it; see accounting/stats.py).
_ADDRESS: BindParameter[str] = bindparam("address")
_PAYMENTS_JOIN = payments.join(payment_batches, payment_batches.c.id == payments.c.batch_id)
_MINER_PAYMENTS = (
    select(payments.c.batch_id, payment_batches.c.created, payment_batches.c.txid,
           payment_batches.c.status, payments.c.amount)
    .select_from(_PAYMENTS_JOIN).where(payments.c.address == _ADDRESS)
    .order_by(payment_batches.c.created.desc(), payments.c.batch_id)
    .limit(bindparam("limit", type_=Integer)).offset(bindparam("offset", type_=Integer)))
_MINER_PAYMENT_COUNT = (select(func.count()).select_from(payments)
                        .where(payments.c.address == _ADDRESS))
_IMMATURE = (select(func.coalesce(func.sum(block_rewards.c.amount), 0))
             .where(block_rewards.c.block_id.in_(
                 select(blocks.c.id).where(blocks.c.status == "pending")),
                 block_rewards.c.address == _ADDRESS))
_UNPAID = (select(func.coalesce(func.sum(balances.c.amount), 0))
           .where(balances.c.address == _ADDRESS))
_PAID = (select(func.coalesce(func.sum(payments.c.amount), 0)).select_from(_PAYMENTS_JOIN)
         .where(payments.c.address == _ADDRESS,
                payment_batches.c.status.in_(PAID_STATES)))
_HAS_HISTORY = select(exists().where(shares.c.address == _ADDRESS)
                      | exists().where(ledger.c.address == _ADDRESS))


def has_history(connection: Connection, address: str) -> bool:
    """Whether the pool has ever seen the address: a share, or a ledger entry."""
    return bool(connection.execute(_HAS_HISTORY, {"address": address}).scalar())
