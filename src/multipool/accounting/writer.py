"""The batched share writer: the pool engine's ShareSink backed by the coin's database.
Found blocks travel the same ordered path, so a block always follows its finder's share.

Shares are buffered in memory and written in one multi-row INSERT when ``batch_size``
are waiting or ``flush_interval`` seconds have passed. When the database cannot be
reached, batches go to the local spool (spool.py) and are replayed, in order and
exactly once, as soon as it answers again; while anything is spooled, new batches are
spooled behind it so share ids keep the order shares arrived in.

What a crash can lose: a clean shutdown flushes everything; a kill -9 loses the shares
buffered since the last flush, at most ``flush_interval`` seconds of them (1 s by
default). The memory buffer is bounded: beyond ``max_buffer`` shares it is flushed to
the spool at once rather than grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from multipool.accounting.schema import blocks, shares, spool_progress
from multipool.accounting.spool import ShareSpool
from multipool.stratum.sink import BlockRecord, ShareRecord, ShareSink

# What "the database is not there" looks like through SQLAlchemy and the drivers.
DATABASE_DOWN = (OperationalError, DBAPIError, OSError, ConnectionError, TimeoutError)


def block_row(block: BlockRecord) -> dict[str, Any]:
    return {"kind": "block", "time": block.time, "height": block.height,
            "hash": block.hash_hex, "address": block.address, "worker": block.worker,
            "reward": block.reward, "network_difficulty": block.network_difficulty}


def share_row(share: ShareRecord) -> dict[str, Any]:
    return {"time": share.time, "height": share.height, "address": share.address,
            "worker": share.worker, "ip": share.ip, "difficulty": share.difficulty,
            "share_difficulty": share.share_difficulty, "accepted": share.accepted,
            "reject_code": share.reject_code}


def _db_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "time": datetime.fromtimestamp(row["time"], UTC)}


async def write_rows(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert a stream of share and block rows in order, in the caller's transaction.

    Consecutive shares go in one multi-row INSERT. A block is counted once (unique
    height + hash: a replayed or repeated one is skipped) and its round ends at the
    newest share id, which is its finder's share since rows arrive in order.
    """
    run: list[dict[str, Any]] = []
    for row in [*rows, None]:
        if row is not None and row.get("kind") != "block":
            run.append(_db_row(row))
            continue
        if run:
            await connection.execute(insert(shares), run)
            run = []
        if row is None:
            break
        block = {k: v for k, v in _db_row(row).items() if k != "kind"}
        known = (await connection.execute(
            select(blocks.c.id).where(blocks.c.height == block["height"],
                                      blocks.c.hash == block["hash"]))).first()
        if known is None:
            last_share = (await connection.execute(select(func.max(shares.c.id)))).scalar()
            await connection.execute(insert(blocks).values(
                **block, last_share_id=last_share, status="pending", confirmations=0))


class ShareWriter(ShareSink):
    """Persists shares in batches; spools them while the database is away."""

    # Seconds the final flush may take before what is left goes to the spool.
    SHUTDOWN_FLUSH_TIMEOUT = 10.0

    def __init__(self, *, engine: AsyncEngine, spool_dir: str | Path,
                 batch_size: int = 500, flush_interval: float = 1.0,
                 max_buffer: int = 100_000, replay_chunk: int = 5_000,
                 retry_interval: float = 2.0, logger: logging.Logger | None = None,
                 on_block: Callable[[], None] | None = None):
        self.engine = engine
        # Called once a block row is in the database (the block tracker's wake()).
        self.on_block = on_block
        self.spool = ShareSpool(spool_dir)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.replay_chunk = replay_chunk
        self.retry_interval = retry_interval
        self.logger = logger or logging.getLogger(__name__)
        self.buffer: list[dict[str, Any]] = []
        self.written = 0
        self.spooled = 0
        self.replayed = 0
        self.database_up = True
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    # -- ShareSink -------------------------------------------------------------------

    def record_share(self, share: ShareRecord) -> None:
        self.buffer.append(share_row(share))
        if len(self.buffer) >= self.batch_size:
            self._wake.set()
        if len(self.buffer) >= self.max_buffer:
            # The flush task is stuck behind a slow database: keep memory bounded.
            rows, self.buffer = self.buffer, []
            self.spool.append(rows)
            self.spooled += len(rows)

    def record_block(self, block: BlockRecord) -> None:
        """A block the daemon accepted goes into the same ordered stream as the shares,
        so it lands after its finder's share and its round ends at the right share id,
        through the spool as well when the database is away."""
        if not block.accepted:
            return  # a refused candidate is not a block; its share is recorded already
        self.buffer.append(block_row(block))
        self._wake.set()

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Flush by size or time until cancelled; on the way out, flush what is left."""
        try:
            while True:
                # asyncio.timeout, not wait_for: see JobManager._refresh_loop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await self._wake.wait()
                self._wake.clear()
                # Shielded: a cancellation (shutdown) must not drop a batch half-written;
                # the final flush below waits for this one through the lock.
                await asyncio.shield(self.flush())
        finally:
            try:
                async with asyncio.timeout(self.SHUTDOWN_FLUSH_TIMEOUT):
                    await self.flush()
            except TimeoutError:
                # The database hangs rather than fails: keep what is left in the spool.
                rows, self.buffer = self.buffer, []
                if rows:
                    self.spool.append(rows)
                    self.spooled += len(rows)
                self.logger.warning("database did not answer at shutdown; %d shares spooled",
                                    len(rows))

    async def flush(self) -> None:
        """Write the buffer: to the database, or to the spool when anything is spooled
        already or the database fails; then replay the spool if the database is up."""
        async with self._lock:
            rows, self.buffer = self.buffer, []
            if rows:
                if self.spool.files():
                    self.spool.append(rows)
                    self.spooled += len(rows)
                elif not await self._insert(rows):
                    self.spool.append(rows)
                    self.spooled += len(rows)
            if self.spool.files():
                await self._replay()

    async def _insert(self, rows: list[dict[str, Any]]) -> bool:
        try:
            async with self.engine.begin() as connection:
                await write_rows(connection, rows)
        except DATABASE_DOWN as exc:
            self._down(exc)
            return False
        self._up()
        self.written += len(rows)
        self._announce_blocks(rows)
        return True

    def _announce_blocks(self, rows: list[dict[str, Any]]) -> None:
        if self.on_block is not None and any(row.get("kind") == "block" for row in rows):
            self.on_block()

    async def _replay(self) -> None:
        for path in self.spool.files():
            while True:
                try:
                    async with self.engine.begin() as connection:
                        offset = (await connection.execute(
                            select(spool_progress.c.offset)
                            .where(spool_progress.c.file == path.name))).scalar()
                        rows, new_offset = self.spool.read(path, offset or 0,
                                                           self.replay_chunk)
                        if rows:
                            await write_rows(connection, rows)
                            values = {"file": path.name, "offset": new_offset}
                            if offset is None:
                                await connection.execute(insert(spool_progress), values)
                            else:
                                await connection.execute(
                                    update(spool_progress)
                                    .where(spool_progress.c.file == path.name)
                                    .values(offset=new_offset))
                except DATABASE_DOWN as exc:
                    self._down(exc)
                    return
                self._up()
                self.replayed += len(rows)
                self._announce_blocks(rows)
                if not rows and self.spool.finish(path, new_offset):
                    self.logger.info("replayed spool file %s", path.name)
                    break

    def _down(self, exc: BaseException) -> None:
        if self.database_up:
            self.logger.warning("database unavailable, spooling shares to %s: %s",
                                self.spool.directory, exc)
        self.database_up = False

    def _up(self) -> None:
        if not self.database_up:
            self.logger.info("database is back; replaying spooled shares")
        self.database_up = True
