"""Sends of the pool wallet that no payment batch explains.

A database restored from a backup (or lost and started anew) does not know the payments
made since; paying from it would pay those debts again. So every payment run lists the
wallet's transactions since a durable watermark (``listsinceblock`` from the block hash
kept in ``settings``; the whole history when there is none yet, or when that block is no
longer known) and records each send whose txid is neither a batch's transaction (or an
earlier one it replaced, or its void) nor already recorded, as ``unknown`` in
``wallet_sends``. Payments pause while any send is unknown. The operator looks at it:
``multipool payments ignore-tx TXID`` when it owes the miners nothing (a send by hand),
``multipool payments adopt-tx TXID`` when it paid miners this database still owes (the
restored database's forgotten batches): that books it as a confirmed batch, debiting each
recipient what it received.

A restored database has the watermark of its backup, so the sends after it are listed
again; the unconfirmed ones are always listed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from multipool.accounting.schema import payment_batches, wallet_sends
from multipool.accounting.settings_rows import read_setting, write_setting
from multipool.chain.rpc import DaemonError
from multipool.config import to_units

WATERMARK = "wallet_scan_block"
RPC_INVALID_ADDRESS_OR_KEY = -5  # listsinceblock: "Block not found"
UNKNOWN, IGNORED, ADOPTED = "unknown", "ignored", "adopted"


class ScanWallet(Protocol):
    async def listsinceblock(self, block_hash: str | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class UnknownSend:
    txid: str
    amount: int  # smallest unit, what left the wallet (fee not included)
    seen: datetime


def wallet_sends_of(listing: dict[str, Any], decimals: int) -> dict[str, int]:
    """Given listsinceblock's answer, return txid -> amount sent for every send."""
    sent: dict[str, int] = {}
    for entry in listing.get("transactions", []):
        if entry.get("category") == "send":
            txid = str(entry["txid"])
            sent[txid] = sent.get(txid, 0) + to_units(-entry.get("amount", 0), decimals)
    return sent


async def known_txids(connection: AsyncConnection) -> set[str]:
    """Every txid this database accounts for: batches, what they replaced, their voids,
    and the sends recorded already (whatever their status)."""
    known: set[str] = set()
    rows = await connection.execute(select(payment_batches.c.txid, payment_batches.c.replaced,
                                           payment_batches.c.void_txid))
    for txid, replaced, void in rows:
        known.update(t for t in (txid, void) if t)
        known.update(t for t in (replaced or "").split(",") if t)
    known.update((await connection.execute(select(wallet_sends.c.txid))).scalars())
    return known


async def scan(engine: AsyncEngine, wallet: ScanWallet, decimals: int,
               fence: Callable[[AsyncConnection], Awaitable[None]]) -> list[str]:
    """List the wallet's sends since the watermark; record each unexplained one as
    unknown and move the watermark, in one transaction checked by ``fence`` (the payment
    lock's); return the txids newly recorded."""
    async with engine.connect() as connection:
        since = await read_setting(connection, WATERMARK)
    try:
        listing = await wallet.listsinceblock(since)
    except DaemonError as exc:
        if exc.code != RPC_INVALID_ADDRESS_OR_KEY or since is None:
            raise
        listing = await wallet.listsinceblock(None)  # a chain without that block
    sends = wallet_sends_of(listing, decimals)
    async with engine.begin() as connection:
        await fence(connection)
        fresh = sorted(set(sends) - await known_txids(connection))
        if fresh:
            now = datetime.now(UTC)
            await connection.execute(insert(wallet_sends), [
                {"txid": txid, "seen": now, "amount": sends[txid], "status": UNKNOWN}
                for txid in fresh])
        last = listing.get("lastblock")
        if last:
            await write_setting(connection, WATERMARK, str(last))
    return fresh


async def unknown_sends(engine: AsyncEngine) -> list[UnknownSend]:
    """The sends that keep payments paused, oldest first."""
    async with engine.connect() as connection:
        rows = (await connection.execute(
            select(wallet_sends.c.txid, wallet_sends.c.amount, wallet_sends.c.seen)
            .where(wallet_sends.c.status == UNKNOWN)
            .order_by(wallet_sends.c.seen, wallet_sends.c.txid))).all()
    return [UnknownSend(str(t), int(a), s) for t, a, s in rows]


def pause_message(sends: Sequence[UnknownSend]) -> str:
    """What the log and ``payments status`` say while unknown sends pause payments."""
    txids = ", ".join(s.txid for s in sends[:5]) + (" ..." if len(sends) > 5 else "")
    return (f"payments paused: the wallet holds {len(sends)} send(s) this database does not "
            f"know ({txids}); a restored or lost database may owe less than it thinks. "
            "For each: `multipool payments adopt-tx --coin FILE TXID` if it paid miners "
            "this database still owes, `multipool payments ignore-tx --coin FILE TXID` if "
            "it owes them nothing (a send by hand); payments resume when none is left")


async def mark(engine: AsyncEngine, txid: str, status: str, note: str | None = None) -> bool:
    """Record ``txid`` as ignored or adopted (also a send not scanned yet); return False
    when it is a batch's own transaction, which needs no acknowledgement."""
    async with engine.begin() as connection:
        if txid in await known_txids(connection) and (await connection.execute(
                select(wallet_sends.c.txid).where(wallet_sends.c.txid == txid))).first() is None:
            return False
        changed = await connection.execute(
            update(wallet_sends).where(wallet_sends.c.txid == txid)
            .values(status=status, note=note))
        if changed.rowcount == 0:
            await connection.execute(insert(wallet_sends).values(
                txid=txid, seen=datetime.now(UTC), amount=0, status=status, note=note))
    return True
