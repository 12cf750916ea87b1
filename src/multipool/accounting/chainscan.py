"""Chain reconciliation: pool blocks on the chain that the database does not hold.

A block is written as a candidate before it is submitted, so a running pool never loses
one; a database restored from a backup, a disk that lost its last commits, or a version
of multipool before candidates can still miss some. The block tracker therefore reads
every block of the best chain once, from the height after the *watermark* (the settings
row ``chain_scanned_height``: how far the chain has been read) to the tip, and records
each block that is the pool's and missing:

* the pool's: its coinbase scriptSig holds the push of the pool tag (``[stratum]
  pool_tag``) *and* an output pays the pool's payout script. A block mined to the pool
  address by anyone else (``generatetoaddress``) has no tag and is never recorded;
* recorded as ``pending``, with its reward (the coinbase value paid to the pool's
  script), time and difficulty from the block itself, and its round from the shares
  before it: the finder is the newest *accepted* share at the block's height (its id is
  the round's last share, its address and worker the block's); with none at that height,
  the round ends at the newest share below that height, and the block has no finder
  (address ``""``: under ``solo`` its reward goes to the pool's own account); with no
  share at all the round is empty (everything is fee). It is then split and credited
  like any other block.

A database without a watermark (new, or from before reconciliation) is scanned over the
last :data:`FIRST_SCAN_DEPTH` blocks only: a first start does not read a whole chain.
The watermark moves in the same transaction as the blocks recorded below it, so a crash
never skips a block and never records one twice (and the unique height + hash keeps it
once anyway).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from multipool.accounting.rewards import POOL_FEE
from multipool.accounting.schema import blocks, shares
from multipool.accounting.settings_rows import read_setting, write_setting
from multipool.chain.coinbase import CoinbaseView, read_coinbase
from multipool.chain.header import HEADER_SIZE, parse_header
from multipool.chain.pow import SHA256D_DIFF1_TARGET, bits_to_target
from multipool.chain.serialize import hex_to_bytes
from multipool.errors import SerializationError

WATERMARK = "chain_scanned_height"
# About 1.7 days of Litecoin, 17 hours of Dogecoin, a week of Bitcoin: a first scan reads
# this many blocks (one getblockhash and, for a block not recorded, one getblock each).
FIRST_SCAN_DEPTH = 1000
# Heights read between two watermark commits.
STEP = 100


class ChainReaderAPI(Protocol):
    async def getblockcount(self) -> int: ...

    async def getblockhash(self, height: int) -> str: ...

    async def getblock(self, hash_hex: str, verbosity: int = 1) -> Any: ...


@dataclass(frozen=True, slots=True)
class FoundBlock:
    """A pool block on the chain that the database did not hold, now recorded."""

    height: int
    hash_hex: str
    reward: int
    last_share_id: int | None
    finder: str | None


class ChainReconciler:
    """Reads the chain from the watermark to the tip; records missing pool blocks."""

    def __init__(self, *, engine: AsyncEngine, daemon: ChainReaderAPI, pool_tag: bytes,
                 payout_script: bytes, first_scan_depth: int = FIRST_SCAN_DEPTH,
                 logger: logging.Logger | None = None):
        if not pool_tag or not payout_script:
            raise ValueError("chain reconciliation needs the pool tag and payout script")
        if first_scan_depth < 1:
            raise ValueError(f"first_scan_depth must be at least 1, got {first_scan_depth}")
        self.engine = engine
        self.daemon = daemon
        self.pool_tag = pool_tag
        self.payout_script = payout_script
        self.first_scan_depth = first_scan_depth
        self.logger = logger or logging.getLogger(__name__)

    async def watermark(self) -> int | None:
        async with self.engine.connect() as connection:
            value = await read_setting(connection, WATERMARK)
        return None if value is None else int(value)

    async def reconcile(self) -> list[FoundBlock]:
        """Read the chain from the block after the watermark to the tip; return the pool
        blocks recorded because the database did not hold them."""
        tip = await self.daemon.getblockcount()
        mark = await self.watermark()
        first_scan = max(1, tip - self.first_scan_depth + 1)
        if mark is None:
            start = first_scan
            self.logger.info("no chain watermark: reading blocks %d-%d for pool blocks the "
                             "database does not hold", start, tip)
        elif mark > tip:
            start = first_scan
            self.logger.warning("the chain (height %d) is shorter than the watermark %d: a "
                                "new or reindexed chain; reading blocks %d-%d", tip, mark,
                                start, tip)
        else:
            start = mark + 1
        found: list[FoundBlock] = []
        for low in range(start, tip + 1, STEP):
            high = min(low + STEP - 1, tip)
            found += await self._scan(low, high)
        return found

    async def _scan(self, low: int, high: int) -> list[FoundBlock]:
        """Read heights ``low..high``; record the missing pool blocks and move the
        watermark to ``high`` in one transaction."""
        hashes = {height: await self.daemon.getblockhash(height)
                  for height in range(low, high + 1)}
        async with self.engine.connect() as connection:
            known = set((await connection.execute(
                select(blocks.c.hash).where(blocks.c.height.between(low, high)))).scalars())
        missing: list[tuple[int, str, bytes, CoinbaseView]] = []
        for height, hash_hex in hashes.items():
            if hash_hex in known:
                continue
            try:
                raw = hex_to_bytes(await self.daemon.getblock(hash_hex, 0), "block")
                coinbase = read_coinbase(raw)
            except (SerializationError, ValueError) as exc:
                # Not a block the pool built (those always read back): logged, passed.
                self.logger.warning("block %d %s cannot be read (%s): not the pool's",
                                    height, hash_hex, exc)
                continue
            if coinbase.carries(self.pool_tag) and coinbase.paid_to(self.payout_script) > 0:
                missing.append((height, hash_hex, raw, coinbase))
        found: list[FoundBlock] = []
        async with self.engine.begin() as connection:
            for height, hash_hex, raw, coinbase in missing:
                found.append(await self._record(connection, height, hash_hex, raw, coinbase))
            await write_setting(connection, WATERMARK, str(high))
        for block in found:
            self.logger.warning(
                "block %d %s on the chain pays the pool and carries its tag, but the "
                "database did not hold it: recorded (reward %d, round ends at share %s, "
                "finder %s)", block.height, block.hash_hex, block.reward,
                block.last_share_id, block.finder or "unknown")
        return found

    async def _record(self, connection: AsyncConnection, height: int, hash_hex: str,
                      raw: bytes, coinbase: CoinbaseView) -> FoundBlock:
        _, _, _, ntime, bits, _ = parse_header(raw[:HEADER_SIZE])
        finder = (await connection.execute(
            select(shares.c.id, shares.c.address, shares.c.worker)
            .where(shares.c.height == height, shares.c.accepted.is_(True))
            .order_by(shares.c.id.desc()).limit(1))).first()
        if finder is not None:
            last_share: int | None = int(finder.id)
            address, worker = str(finder.address), str(finder.worker)
        else:
            before = (await connection.execute(
                select(func.max(shares.c.id)).where(shares.c.height < height))).scalar()
            last_share = None if before is None else int(before)
            address, worker = POOL_FEE, ""
        reward = coinbase.paid_to(self.payout_script)
        # Should the share writer store the block meanwhile, the unique height + hash
        # fails this transaction and the next check finds the block known.
        await connection.execute(insert(blocks).values(
            height=height, hash=hash_hex, time=datetime.fromtimestamp(ntime, UTC),
            address=address, worker=worker, reward=reward,
            network_difficulty=SHA256D_DIFF1_TARGET / bits_to_target(bits),
            last_share_id=last_share, status="pending", confirmations=0))
        return FoundBlock(height, hash_hex, reward, last_share,
                          None if finder is None else f"{address}.{worker}")

