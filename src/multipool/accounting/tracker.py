"""The block tracker: follows each found block to confirmed or orphaned.

A block is *confirmed* once its coinbase is spendable with a safety margin
(``maturity + margin`` confirmations) and *orphaned* while it is off the best chain
(``getblockheader`` answers confirmations -1, or the daemon does not know it). An
orphaned block is re-checked for ``2 x maturity`` blocks: a reorganisation back onto
it makes it pending again. Only blocks the pool recorded are tracked, so a block mined
into the pool wallet by someone else is never credited to anyone.

Each check first writes the reward snapshot of new blocks (rounds.py); a block's move to
confirmed and the credit of its snapshot to balances are one transaction, and confirmed
is final, so a block is credited exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.rounds import RewardPolicy, credit_block, split_new_blocks
from multipool.accounting.schema import blocks
from multipool.chain.rpc import DaemonError

# Bitcoin Core's "Block not found".
RPC_INVALID_ADDRESS_OR_KEY = -5


class ChainAPI(Protocol):
    async def getblockheader(self, hash_hex: str, verbose: bool = True) -> Any: ...

    async def getblockcount(self) -> int: ...


class BlockTracker:
    """Moves blocks between pending, confirmed and orphaned by asking the daemon."""

    def __init__(self, *, engine: AsyncEngine, daemon: ChainAPI, policy: RewardPolicy,
                 maturity: int = 100, margin: int = 1, logger: logging.Logger | None = None):
        self.engine = engine
        self.daemon = daemon
        self.policy = policy
        # Set by wake(); the engine's supervisor runs a check as soon as it is set.
        self.wakeup = asyncio.Event()
        self.maturity = maturity
        self.margin = margin
        self.logger = logger or logging.getLogger(__name__)

    def wake(self) -> None:
        """Check now rather than at the next interval: a block was just recorded, and its
        reward snapshot is written at once."""
        self.wakeup.set()

    async def _confirmations(self, hash_hex: str) -> int:
        """Confirmations of a block; -1 when it is not on the best chain."""
        try:
            header = await self.daemon.getblockheader(hash_hex)
        except DaemonError as exc:
            if exc.code == RPC_INVALID_ADDRESS_OR_KEY:
                return -1
            raise
        return int(header.get("confirmations", -1))

    async def check(self) -> dict[str, int]:
        """Check every pending block, and recently orphaned ones; return how many moved
        to each status."""
        split = await split_new_blocks(self.engine, self.policy)
        if split:
            self.logger.info("reward snapshot written for %d new block(s)", split)
        tip = await self.daemon.getblockcount()
        async with self.engine.connect() as connection:
            rows = (await connection.execute(
                select(blocks.c.id, blocks.c.height, blocks.c.hash, blocks.c.status)
                .where((blocks.c.status == "pending")
                       | ((blocks.c.status == "orphaned")
                          & (blocks.c.height > tip - 2 * self.maturity)))
                .order_by(blocks.c.height))).all()
        moved = {"confirmed": 0, "orphaned": 0, "pending": 0}
        for block_id, height, hash_hex, status in rows:
            confirmations = await self._confirmations(hash_hex)
            if confirmations < 0:
                new_status = "orphaned"
            elif confirmations >= self.maturity + self.margin:
                new_status = "confirmed"
            else:
                new_status = "pending"
            async with self.engine.begin() as connection:
                await connection.execute(
                    update(blocks).where(blocks.c.id == block_id)
                    .values(status=new_status, confirmations=max(confirmations, 0)))
                credited = (await credit_block(connection, block_id)
                            if new_status == "confirmed" else 0)
            if credited:
                self.logger.info("block %d confirmed: %d credited to balances", height,
                                 credited)
            if new_status != status:
                moved[new_status] += 1
                self.logger.info("block %d %s: %s -> %s (%d confirmations)", height,
                                 hash_hex, status, new_status, confirmations)
        return moved
