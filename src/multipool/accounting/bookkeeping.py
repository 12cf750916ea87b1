"""Balances and the ledger that explains them.

Every change to a balance is one ledger row written in the same transaction as the
balance update, so for every address ``balance == sum(ledger amounts)`` at all times;
:func:`ledger_mismatches` checks it. The pool fee, when no fee address is set, is booked
under :data:`~multipool.accounting.rewards.POOL_FEE` ("") like any other account but is
never paid out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from multipool.accounting.schema import balances, ledger

# Ledger kinds.
BLOCK_CREDIT = "block_credit"
POOL_FEE_CREDIT = "pool_fee"
PAYMENT = "payment"
PAYMENT_REFUND = "payment_refund"
TX_FEE = "tx_fee"
ADJUSTMENT = "adjustment"


@dataclass(frozen=True, slots=True)
class Mismatch:
    address: str
    balance: int
    ledger_total: int


async def post(connection: AsyncConnection, *, address: str, amount: int, kind: str,
               block_id: int | None = None, batch_id: str | None = None,
               note: str | None = None) -> None:
    """Change ``address``'s balance by ``amount`` (smallest unit; negative debits) and
    write the ledger row that explains it, in the caller's transaction."""
    if not isinstance(amount, int):
        raise TypeError(f"ledger amounts are integers in the smallest unit, got {amount!r}")
    changed = await connection.execute(
        update(balances).where(balances.c.address == address)
        .values(amount=balances.c.amount + amount))
    if changed.rowcount == 0:
        await connection.execute(insert(balances).values(address=address, amount=amount))
    await connection.execute(insert(ledger).values(
        time=datetime.now(UTC), address=address, amount=amount, kind=kind,
        block_id=block_id, batch_id=batch_id, note=note))


async def balance_of(connection: AsyncConnection, address: str) -> int:
    value = (await connection.execute(
        select(balances.c.amount).where(balances.c.address == address))).scalar()
    return int(value or 0)


async def ledger_mismatches(connection: AsyncConnection) -> list[Mismatch]:
    """Return every address whose balance differs from the sum of its ledger rows
    (an empty list when the books balance)."""
    sums = dict((await connection.execute(
        select(ledger.c.address, func.sum(ledger.c.amount)).group_by(ledger.c.address))).all())
    held = dict((await connection.execute(select(balances.c.address, balances.c.amount))).all())
    return [Mismatch(address, int(held.get(address) or 0), int(sums.get(address) or 0))
            for address in sorted(set(sums) | set(held))
            if int(held.get(address) or 0) != int(sums.get(address) or 0)]
