"""The block tracker: follows each found block to confirmed or orphaned.

A block is *confirmed* once its coinbase is spendable with a safety margin
(``maturity + margin`` confirmations) and *orphaned* while it is off the best chain
(``getblockheader`` answers confirmations -1, or the daemon does not know it). An
orphaned block is re-checked for ``2 x maturity`` blocks: a reorganisation back onto
it makes it pending again. Only blocks the pool recorded are tracked, so a block mined
into the pool wallet by someone else is never credited to anyone.

A *candidate* is a block the share writer stored before submitting it, whose verdict is
not recorded yet (the engine was killed meanwhile, or the verdict is on its way). The
tracker settles it from the chain: on the best chain it is pending like any other; after
``candidate_grace`` seconds, one the daemon does not know (never submitted) is dropped
and one it knows off the best chain is orphaned.

Each check, in this order: reads the chain since the last check for pool blocks the
database does not hold (chainscan.py; the first check of a process reads from the
watermark left by the previous one), refreshes the status of every tracked block, writes
the reward snapshot of new blocks (rounds.py), and confirms mature blocks. Statuses come
before snapshots so that a PROP round that follows an orphan takes the orphan's shares.
A block's move to confirmed and the credit of its snapshot to balances are one
transaction, and confirmed is final, so a block is credited exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.chainscan import FIRST_SCAN_DEPTH, ChainReconciler
from multipool.accounting.rounds import RewardPolicy, credit_block, split_new_blocks
from multipool.accounting.schema import CANDIDATE, blocks
from multipool.accounting.stats import as_utc
from multipool.chain.rpc import DaemonError

# Bitcoin Core's "Block not found".
RPC_INVALID_ADDRESS_OR_KEY = -5


class ChainAPI(Protocol):
    async def getblockheader(self, hash_hex: str, verbose: bool = True) -> Any: ...

    async def getblockcount(self) -> int: ...

    async def getblockhash(self, height: int) -> str: ...

    async def getblock(self, hash_hex: str, verbosity: int = 1) -> Any: ...


class BlockTracker:
    """Moves blocks between candidate, pending, confirmed and orphaned by asking the
    daemon; records pool blocks found on the chain that the database misses."""

    # Longer than any submitblock takes: a candidate the daemon still does not know
    # after this long was never submitted (the engine died before) and is dropped.
    CANDIDATE_GRACE = 600.0
    # Confirmations beyond the coinbase maturity before a block counts as confirmed.
    MARGIN = 1

    def __init__(self, *, engine: AsyncEngine, daemon: ChainAPI, policy: RewardPolicy,
                 maturity: int = 100, margin: int = MARGIN, pool_tag: bytes | None = None,
                 payout_script: bytes | None = None,
                 first_scan_depth: int = FIRST_SCAN_DEPTH,
                 candidate_grace: float = CANDIDATE_GRACE,
                 spool_pending: Callable[[], object] | None = None,
                 logger: logging.Logger | None = None):
        """Without ``pool_tag`` and ``payout_script`` the chain is not reconciled (only
        recorded blocks are followed). ``spool_pending`` tells whether the share writer
        holds spooled rows: the chain is not read meanwhile, since a block there would
        look missing."""
        self.engine = engine
        self.daemon = daemon
        self.policy = policy
        # Set by wake(); the engine's supervisor runs a check as soon as it is set.
        self.wakeup = asyncio.Event()
        self.maturity = maturity
        self.margin = margin
        self.candidate_grace = candidate_grace
        self.spool_pending = spool_pending
        self.logger = logger or logging.getLogger(__name__)
        self.reconciler = (
            ChainReconciler(engine=engine, daemon=daemon, pool_tag=pool_tag,
                            payout_script=payout_script, first_scan_depth=first_scan_depth,
                            logger=self.logger)
            if pool_tag and payout_script else None)

    def wake(self) -> None:
        """Check now rather than at the next interval: a block was just recorded, and its
        reward snapshot is written at once."""
        self.wakeup.set()

    async def _header_confirmations(self, hash_hex: str) -> int | None:
        """Confirmations of a block: -1 when it is off the best chain, None when the
        daemon does not know it at all."""
        try:
            header = await self.daemon.getblockheader(hash_hex)
        except DaemonError as exc:
            if exc.code == RPC_INVALID_ADDRESS_OR_KEY:
                return None
            raise
        return int(header.get("confirmations", -1))

    async def check(self) -> dict[str, int]:
        """Reconcile the chain, refresh every tracked block, split new ones and credit
        mature ones; return how many moved to each status (and how many were recorded
        from the chain or dropped as never submitted)."""
        moved = {"confirmed": 0, "orphaned": 0, "pending": 0, "dropped": 0, "recorded": 0}
        if self.reconciler is not None:
            if self.spool_pending is not None and self.spool_pending():
                self.logger.info("shares are spooled: the chain is read once they are in "
                                 "the database")
            else:
                moved["recorded"] = len(await self.reconciler.reconcile())
        tip = await self.daemon.getblockcount()
        async with self.engine.connect() as connection:
            rows = (await connection.execute(
                select(blocks.c.id, blocks.c.height, blocks.c.hash, blocks.c.status,
                       blocks.c.time)
                .where(blocks.c.status.in_(("pending", CANDIDATE))
                       | ((blocks.c.status == "orphaned")
                          & (blocks.c.height > tip - 2 * self.maturity)))
                .order_by(blocks.c.height))).all()
        mature: list[tuple[int, int, str, str, int]] = []
        now = datetime.now(UTC)
        for block_id, height, hash_hex, status, found in rows:
            confirmations = await self._header_confirmations(hash_hex)
            if status == CANDIDATE and (confirmations is None or confirmations < 0):
                if (now - as_utc(found)).total_seconds() < self.candidate_grace:
                    continue  # its submission may be in flight
                if confirmations is None:
                    await self._drop_candidate(block_id, height, hash_hex)
                    moved["dropped"] += 1
                    continue
            if confirmations is None or confirmations < 0:
                new_status = "orphaned"
            elif confirmations >= self.maturity + self.margin:
                if status == CANDIDATE:  # pending first: it is split before it is credited
                    await self._set_status(block_id, height, hash_hex, status, "pending",
                                           confirmations, moved)
                    status = "pending"
                mature.append((block_id, height, hash_hex, status, confirmations))
                continue
            else:
                new_status = "pending"
            await self._set_status(block_id, height, hash_hex, status, new_status,
                                   confirmations, moved)
        split = await split_new_blocks(self.engine, self.policy)
        if split:
            self.logger.info("reward snapshot written for %d new block(s)", split)
        for block_id, height, hash_hex, status, confirmations in mature:
            await self._set_status(block_id, height, hash_hex, status, "confirmed",
                                   confirmations, moved)
        return moved

    async def _set_status(self, block_id: int, height: int, hash_hex: str, status: str,
                          new_status: str, confirmations: int | None,
                          moved: dict[str, int]) -> None:
        """Write a block's status and confirmations, if its status is still ``status``;
        a block reaching confirmed has its snapshot credited in the same transaction (one
        without a snapshot yet stays as it is until the next check)."""
        async with self.engine.begin() as connection:
            if new_status == "confirmed" and not (await connection.execute(
                    select(blocks.c.rewards_split).where(blocks.c.id == block_id))).scalar():
                return
            changed = await connection.execute(
                update(blocks).where(blocks.c.id == block_id, blocks.c.status == status)
                .values(status=new_status, confirmations=max(confirmations or 0, 0)))
            if changed.rowcount != 1:
                return  # moved meanwhile (a verdict from the share writer): next check
            credited = (await credit_block(connection, block_id)
                        if new_status == "confirmed" else 0)
        if credited:
            self.logger.info("block %d confirmed: %d credited to balances", height, credited)
        if new_status != status:
            moved[new_status] += 1
            self.logger.info("block %d %s: %s -> %s (%s confirmations)", height, hash_hex,
                             status, new_status, confirmations)

    async def _drop_candidate(self, block_id: int, height: int, hash_hex: str) -> None:
        async with self.engine.begin() as connection:
            gone = await connection.execute(
                delete(blocks).where(blocks.c.id == block_id, blocks.c.status == CANDIDATE))
        if gone.rowcount:
            self.logger.warning("block candidate %d %s dropped: the daemon never got it "
                                "(the engine stopped before submitting it)", height, hash_hex)
