"""Balances and the ledger that explains them.

Every change to a balance is one ledger row written in the same transaction as the
balance update, so for every address ``balance == sum(ledger amounts)`` at all times;
:func:`ledger_mismatches` checks it. The pool fee, when no fee address is set, is booked
under :data:`~multipool.accounting.rewards.POOL_FEE` ("") like any other account but is
never paid out.

A payment debits each recipient what its output pays (``payment``) and charges the
network fee (``tx_fee``) to the fee account, or to the recipients when the miners pay it;
a payment proven never to confirm gives both back (``payment_refund``, ``tx_fee_refund``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from multipool.accounting.schema import balances, ledger

# Ledger kinds.
BLOCK_CREDIT = "block_credit"
POOL_FEE_CREDIT = "pool_fee"
PAYMENT = "payment"
PAYMENT_REFUND = "payment_refund"
TX_FEE = "tx_fee"
TX_FEE_REFUND = "tx_fee_refund"
ADJUSTMENT = "adjustment"

# Addresses per IN (...) list: far below every backend's limit on bound parameters.
_IN_CHUNK = 500


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


async def post_many(connection: AsyncConnection, entries: Sequence[tuple[str, int]], *,
                    kind: str, block_id: int | None = None, batch_id: str | None = None,
                    note: str | None = None) -> None:
    """:func:`post` for many (address, amount) entries at once, in a handful of
    statements whatever their number (a payment batch, a block's credits)."""
    if not entries:
        return
    if len({address for address, _ in entries}) != len(entries):
        raise ValueError("post_many needs each address once")
    if not all(isinstance(amount, int) for _, amount in entries):
        raise TypeError("ledger amounts are integers in the smallest unit")
    addresses = [address for address, _ in entries]
    known: set[str] = set()
    for start in range(0, len(addresses), _IN_CHUNK):
        known.update((await connection.execute(
            select(balances.c.address)
            .where(balances.c.address.in_(addresses[start:start + _IN_CHUNK])))).scalars())
    fresh = [{"address": a, "amount": v} for a, v in entries if a not in known]
    if fresh:
        await connection.execute(insert(balances), fresh)
    held = [{"b_address": a, "b_amount": v} for a, v in entries if a in known]
    if held:
        await connection.execute(
            update(balances).where(balances.c.address == bindparam("b_address"))
            .values(amount=balances.c.amount + bindparam("b_amount")), held)
    now = datetime.now(UTC)
    await connection.execute(insert(ledger), [
        {"time": now, "address": a, "amount": v, "kind": kind, "block_id": block_id,
         "batch_id": batch_id, "note": note} for a, v in entries])


async def balances_of(connection: AsyncConnection, addresses: Sequence[str]) -> dict[str, int]:
    """The balances of many addresses (0 for one without a row)."""
    found: dict[str, int] = {}
    for start in range(0, len(addresses), _IN_CHUNK):
        rows = (await connection.execute(
            select(balances.c.address, balances.c.amount)
            .where(balances.c.address.in_(addresses[start:start + _IN_CHUNK])))).all()
        found.update((str(a), int(v)) for a, v in rows)
    return {address: found.get(address, 0) for address in addresses}


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


async def negative_balances(connection: AsyncConnection) -> list[tuple[str, int]]:
    """Every account below zero (the fee account after fees it could not cover), for the
    log and ``payments status``: no account goes negative unnoticed."""
    rows = (await connection.execute(
        select(balances.c.address, balances.c.amount).where(balances.c.amount < 0)
        .order_by(balances.c.address))).all()
    return [(str(address), int(amount)) for address, amount in rows]
