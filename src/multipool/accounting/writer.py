"""The batched share writer: the pool engine's ShareSink backed by the coin's database.
Found blocks travel the same ordered path, so a block always follows its finder's share.

Shares are buffered in memory and written in one multi-row INSERT when ``batch_size``
are waiting or ``flush_interval`` seconds have passed. When the database cannot be
reached, batches go to the local spool (spool.py) and are replayed, in order and
exactly once, as soon as it answers again; while anything is spooled, new batches are
spooled behind it so share ids keep the order shares arrived in.

Every write has a deadline (``insert_timeout``): a database that hangs rather than fails
does not stall the writer; the batch goes to the spool. A write that timed out (or failed
at its commit) may still have been committed, so it is spooled *in doubt*: behind a
header naming the writer and the batch's sequence number. Each batch transaction first
moves this writer's marker row in ``spool_progress`` to its sequence number, so replay
knows, by reading the marker under a lock, whether the batch landed (its rows are
skipped) or not (they are inserted): a share is never written twice.

Rows the database refuses outright (an integrity or data error: the rows are at fault,
not the database) are not an outage: the batch is split in halves until the refused rows
are found, those go to the quarantine file beside the spool with an error in the log,
and the rest are written as usual.

A block candidate is made durable before it is submitted (:meth:`record_candidate`): the
buffer, with the finder's share and the candidate at its end, is written at once to the
database, or to the spool (fsynced) when the database is away, slow, or the writer is busy.

What a crash can lose: a clean shutdown flushes everything (the batch in flight and the
buffer go to the spool if the database does not take them in time); a kill -9 loses the
shares buffered since the last flush, at most ``flush_interval`` seconds of them (1 s by
default), and never a block candidate, which is durable before it is submitted. The
memory buffer is bounded: beyond ``max_buffer`` shares it goes to the spool at once,
behind the batch in flight (spooled in doubt first), rather than grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from multipool.accounting.database import SQLITE_BUSY_TIMEOUT_MS
from multipool.accounting.schema import CANDIDATE, blocks, shares, spool_progress
from multipool.accounting.spool import Quarantine, ShareSpool
from multipool.stratum.sink import BlockCandidate, BlockRecord, ShareRecord, ShareSink

# What "the database is not there" looks like through SQLAlchemy and the drivers.
DATABASE_DOWN = (OperationalError, DBAPIError, OSError, ConnectionError, TimeoutError)

# Row kinds in the stream (a share has none). "block" is an accepted verdict; a candidate
# row becomes a block row with the status of the same name (schema.CANDIDATE).
ACCEPTED = "block"
REFUSED = "refused"
# A spool line that opens a batch whose commit is in doubt.
IN_DOUBT = "in_doubt"

T = TypeVar("T")


class BadRow(ValueError):
    """A row that cannot even be turned into an INSERT (a damaged spool line)."""


def refuses_rows(exc: BaseException) -> bool:
    """Given an error from a write, return True when the rows caused it (a constraint or
    a value the database will never take) rather than the database's state: such rows
    are quarantined, not retried. SQLSTATE classes 22 (data) and 23 (integrity) cover
    PostgreSQL errors that asyncpg hands over as plain DBAPI errors."""
    if isinstance(exc, BadRow | IntegrityError | DataError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return False
        state = getattr(exc.orig, "sqlstate", None)
        return isinstance(state, str) and state[:2] in ("22", "23")
    # Refused by the driver before reaching the database (a value of the wrong type).
    return isinstance(exc, StatementError)


def block_row(block: BlockCandidate) -> dict[str, Any]:
    """The stream row of a block: ``candidate`` before its submission, then its verdict,
    ``block`` (accepted) or ``refused``."""
    kind = (CANDIDATE if not isinstance(block, BlockRecord)
            else ACCEPTED if block.accepted else REFUSED)
    return {"kind": kind, "time": block.time, "height": block.height,
            "hash": block.hash_hex, "address": block.address, "worker": block.worker,
            "reward": block.reward, "network_difficulty": block.network_difficulty}


def share_row(share: ShareRecord) -> dict[str, Any]:
    return {"time": share.time, "height": share.height, "address": share.address,
            "worker": share.worker, "ip": share.ip, "difficulty": share.difficulty,
            "share_difficulty": share.share_difficulty, "accepted": share.accepted,
            "reject_code": share.reject_code}


def _db_row(row: dict[str, Any]) -> dict[str, Any]:
    try:
        return {**row, "time": datetime.fromtimestamp(row["time"], UTC)}
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        raise BadRow(f"unusable row {row!r}: {exc!r}") from exc


async def write_rows(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert a stream of share and block rows in order, in the caller's transaction.

    Consecutive shares go in one multi-row INSERT. A block is counted once (unique
    height + hash): a candidate is inserted with status ``candidate`` and its round ends
    at the newest share id, its finder's share since rows arrive in order; an accepted
    verdict moves it to ``pending`` (or inserts it so, when no candidate was stored); a
    refused verdict deletes the candidate.
    """
    run: list[dict[str, Any]] = []
    for row in [*rows, None]:
        if row is not None and row.get("kind") is None:
            run.append(_db_row(row))
            continue
        if run:
            await connection.execute(insert(shares), run)
            run = []
        if row is None:
            break
        kind = row["kind"]
        block = {k: v for k, v in _db_row(row).items() if k != "kind"}
        same = (blocks.c.height == block["height"]) & (blocks.c.hash == block["hash"])
        if kind == REFUSED:
            await connection.execute(delete(blocks).where(same,
                                                          blocks.c.status == CANDIDATE))
            continue
        if kind not in (CANDIDATE, ACCEPTED):
            raise BadRow(f"unknown row kind {kind!r}")
        known = (await connection.execute(select(blocks.c.status).where(same))).first()
        if known is None:
            last_share = (await connection.execute(select(func.max(shares.c.id)))).scalar()
            await connection.execute(insert(blocks).values(
                **block, last_share_id=last_share,
                status=CANDIDATE if kind == CANDIDATE else "pending", confirmations=0))
        elif kind == ACCEPTED and known.status == CANDIDATE:
            await connection.execute(update(blocks).where(same, blocks.c.status == CANDIDATE)
                                     .values(status="pending"))


class _Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"  # not written; for a commit that timed out or broke: maybe written
    REFUSED = "refused"  # the rows themselves were refused; nothing was written


class _MarkerLost(SQLAlchemyError):
    """This writer's marker row is gone (deleted by hand): it is created again."""


@dataclass
class _Batch:
    """Rows taken from the buffer and being written, in order: ``chunks`` not written
    yet, the first in the transaction numbered ``seq`` (0 while none is in flight);
    ``spooled`` once the whole batch went to the spool (then it is done with)."""

    chunks: deque[list[dict[str, Any]]] = field(default_factory=deque)
    seq: int = 0
    spooled: bool = False


@dataclass(frozen=True, slots=True)
class _ReplayStep:
    offset: int
    inserted: list[dict[str, Any]]
    skipped: int
    empty: bool


class ShareWriter(ShareSink):
    """Persists shares in batches; spools them while the database is away."""

    # Seconds the final flush may take before what is left goes to the spool.
    SHUTDOWN_FLUSH_TIMEOUT = 10.0
    # How long a block candidate waits for a write in progress before it goes to the
    # spool instead, and how long its own database write may take (then: the spool).
    CANDIDATE_LOCK_WAIT = 0.2
    CANDIDATE_TIMEOUT = 1.0
    # On SQLite, how much longer than its own busy timeout a transaction is given before
    # it is abandoned (only a stalled disk gets there).
    SQLITE_SLACK = 2.0

    def __init__(self, *, engine: AsyncEngine, spool_dir: str | Path,
                 batch_size: int = 500, flush_interval: float = 1.0,
                 max_buffer: int = 100_000, replay_chunk: int = 5_000,
                 retry_interval: float = 2.0, insert_timeout: float = 5.0,
                 quarantine_file: str | Path | None = None,
                 logger: logging.Logger | None = None,
                 on_block: Callable[[], None] | None = None):
        self.engine = engine
        # Called once a block row is in the database (the block tracker's wake()).
        self.on_block = on_block
        self.spool = ShareSpool(spool_dir)
        spool_path = Path(spool_dir)
        self.quarantine = Quarantine(quarantine_file if quarantine_file is not None
                                     else spool_path.with_name(spool_path.name
                                                               + "-quarantine.jsonl"))
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.replay_chunk = replay_chunk
        self.retry_interval = retry_interval
        self.insert_timeout = insert_timeout
        self.logger = logger or logging.getLogger(__name__)
        self.buffer: list[dict[str, Any]] = []
        self.written = 0
        self.spooled = 0
        self.replayed = 0
        self.skipped = 0  # spooled in doubt, found committed at replay
        self.quarantined = 0
        self.timeouts = 0
        self.database_up = True
        # This writer's marker in spool_progress: the last batch it committed.
        self.marker = f"writer:{uuid.uuid4().hex}"
        self._marker_ready = False
        self._seq = 0
        self._inflight: _Batch | None = None
        self._abandoned: set[asyncio.Future[Any]] = set()
        self._stopped = False
        self._spool_scheduled = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    # -- ShareSink -------------------------------------------------------------------

    def record_share(self, share: ShareRecord) -> None:
        self.buffer.append(share_row(share))
        if self._stopped:
            self._spool_soon()
            return
        if len(self.buffer) >= self.batch_size:
            self._wake.set()
        if len(self.buffer) >= self.max_buffer:
            # The flush is stuck behind a slow database: keep memory bounded.
            self.logger.warning("%d shares buffered: spooling them", len(self.buffer))
            self._spool_now()

    async def record_candidate(self, candidate: BlockCandidate) -> None:
        """Write the buffer, ending with the candidate (so its round ends at its finder's
        share), and return once it is committed or in the fsynced spool."""
        self.buffer.append(block_row(candidate))
        try:
            if self._stopped:
                self._spool_now()
                return
            try:
                async with asyncio.timeout(self.CANDIDATE_LOCK_WAIT):
                    await self._lock.acquire()
            except TimeoutError:
                # A slow write or a replay holds the writer: the spool is durable now.
                self._spool_now()
                return
            try:
                await self._store_buffer(self.CANDIDATE_TIMEOUT)
            finally:
                self._lock.release()
        except OSError as exc:
            self.logger.error("block candidate %d %s could not be stored (%s); it is "
                              "submitted anyway and recorded from the chain at the next "
                              "start", candidate.height, candidate.hash_hex, exc)

    def record_block(self, block: BlockRecord) -> None:
        """The daemon's verdict goes into the same ordered stream as the shares: it
        moves the candidate to pending or drops it, through the spool as well when the
        database is away."""
        self.buffer.append(block_row(block))
        if self._stopped:
            self._spool_soon()
            return
        self._wake.set()

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Flush by size or time until cancelled; on the way out, flush what is left.
        Whatever ends it, the batch in flight and the buffer are in the spool or the
        database when it returns or raises."""
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
                self.logger.warning("database did not take the last shares within %gs; "
                                    "they go to the spool", self.SHUTDOWN_FLUSH_TIMEOUT)
            finally:
                # From now on, anything recorded goes straight to the spool.
                self._stopped = True
                self._spool_now()

    async def flush(self) -> None:
        """Write the buffer: to the database, or to the spool when anything is spooled
        already or the database fails; then replay the spool if the database is up."""
        async with self._lock:
            await self._store_buffer(self.insert_timeout)
            if self.spool.files():
                await self._replay()

    # -- writing fresh rows --------------------------------------------------------------

    async def _store_buffer(self, timeout: float) -> None:
        rows, self.buffer = self.buffer, []
        if not rows:
            return
        if self.spool.files():
            self._spool_rows(rows)  # behind what is spooled already: order is kept
            return
        await self._store(rows, timeout)

    async def _store(self, rows: list[dict[str, Any]], timeout: float) -> None:
        """Write fresh rows in order, each transaction bounded by ``timeout``: a refused
        part is halved until the refused rows are found and quarantined; on a failure
        the rest, from the failed transaction on, goes to the spool."""
        batch = _Batch(deque([rows]))
        self._inflight = batch
        try:
            if not self._marker_ready:
                outcome, error, _ = await self._bounded(
                    partial(self._create_progress, self.marker), timeout)
                if batch.spooled:
                    return
                if outcome is not _Outcome.DONE:
                    self._down(error)
                    self._spool_batch(batch)
                    return
                self._marker_ready = True
            while batch.chunks:
                chunk = batch.chunks[0]
                self._seq += 1
                batch.seq = self._seq
                outcome, error, _ = await self._bounded(
                    partial(self._write_fresh, chunk, batch.seq), timeout)
                if batch.spooled:  # spooled (in doubt) meanwhile: replay sorts it out
                    if outcome is _Outcome.DONE:
                        self._up()
                        self._announce_blocks(chunk)
                    return
                if outcome is _Outcome.FAILED:
                    if isinstance(error, _MarkerLost):
                        self._marker_ready = False
                    self._down(error)
                    self._spool_batch(batch)
                    return
                batch.seq = 0
                batch.chunks.popleft()
                if outcome is _Outcome.DONE:
                    self._up()
                    self.written += len(chunk)
                    self._announce_blocks(chunk)
                elif len(chunk) == 1:
                    self._quarantine(chunk, error)
                else:
                    middle = len(chunk) // 2
                    batch.chunks.extendleft([chunk[middle:], chunk[:middle]])
        except BaseException:
            # Cancelled (shutdown) or broken: what is not written must not be lost.
            self._spool_batch(batch)
            raise
        finally:
            self._inflight = None

    async def _write_fresh(self, rows: list[dict[str, Any]], seq: int,
                           connection: AsyncConnection) -> None:
        # The marker first: its row lock (SQLite: the database's write lock) is taken
        # before anything else, so whoever reads it under a lock later sees this
        # transaction either committed or gone.
        moved = await connection.execute(
            update(spool_progress).where(spool_progress.c.file == self.marker)
            .values(offset=seq))
        if moved.rowcount != 1:
            raise _MarkerLost(f"marker row {self.marker} is missing")
        await write_rows(connection, rows)

    # -- spooling --------------------------------------------------------------------------

    def _spool_rows(self, rows: list[dict[str, Any]],
                    header: dict[str, Any] | None = None) -> None:
        self.spool.append([header, *rows] if header is not None else rows)
        self.spooled += len(rows)

    def _spool_batch(self, batch: _Batch) -> None:
        """Spool what ``batch`` has not written yet; its first part in doubt when a
        transaction for it is in flight or failed at an unknown point."""
        if batch.spooled or not batch.chunks:
            batch.spooled = True
            return
        rows = [row for chunk in batch.chunks for row in chunk]
        header = None
        if batch.seq:
            header = {"kind": IN_DOUBT, "writer": self.marker, "seq": batch.seq,
                      "rows": len(batch.chunks[0])}
        self._spool_rows(rows, header)
        batch.spooled = True

    def _spool_now(self) -> None:
        """The batch in flight (if any) and then the buffer go to the spool now, in
        that order: nothing recorded later can land ahead of them."""
        if self._inflight is not None:
            self._spool_batch(self._inflight)
        rows, self.buffer = self.buffer, []
        if rows:
            self._spool_rows(rows)

    def _spool_soon(self) -> None:
        """After the writer stopped: spool what is recorded, one fsync per loop turn."""
        if self._spool_scheduled:
            return
        self._spool_scheduled = True

        def spool() -> None:
            self._spool_scheduled = False
            try:
                self._spool_now()
            except OSError as exc:
                self.logger.error("cannot spool %d rows after the writer stopped: %s",
                                  len(self.buffer), exc)

        asyncio.get_running_loop().call_soon(spool)

    def _quarantine(self, rows: list[dict[str, Any]], error: BaseException | None) -> None:
        self.quarantine.add(rows, repr(error))
        self.quarantined += len(rows)
        self.logger.error("the database refused %d row(s), set aside in %s: %s",
                          len(rows), self.quarantine.path, error)

    # -- replay ------------------------------------------------------------------------

    async def _replay(self) -> None:
        for path in self.spool.files():
            if not await self._replay_file(path):
                return

    async def _replay_file(self, path: Path) -> bool:
        """Replay one spool file; return True once it is replayed and removed, False
        when the database failed (try again later)."""
        outcome, error, _ = await self._bounded(partial(self._create_progress, path.name),
                                                self.insert_timeout)
        if outcome is not _Outcome.DONE:
            self._down(error)
            return False
        limit = self.replay_chunk
        while True:
            outcome, error, step = await self._bounded(
                partial(self._replay_step, path, limit), self.insert_timeout)
            if outcome is _Outcome.REFUSED:
                if limit > 1:
                    limit //= 2  # halve until the refused row is alone
                    continue
                outcome, error2, _ = await self._bounded(
                    partial(self._quarantine_step, path, error), self.insert_timeout)
                if outcome is not _Outcome.DONE:
                    self._down(error2)
                    return False
                limit = self.replay_chunk
                continue
            if outcome is not _Outcome.DONE:
                self._down(error)
                return False
            assert step is not None
            self._up()
            self.replayed += len(step.inserted) + step.skipped
            self.skipped += step.skipped
            self._announce_blocks(step.inserted)
            if step.empty and self.spool.finish(path, step.offset):
                self.logger.info("replayed spool file %s", path.name)
                return True

    async def _create_progress(self, name: str, connection: AsyncConnection) -> None:
        """A ``spool_progress`` row at 0 for a spool file or this writer's marker, unless
        there is one."""
        found = (await connection.execute(
            select(spool_progress.c.file).where(spool_progress.c.file == name))).first()
        if found is None:
            await connection.execute(insert(spool_progress), {"file": name, "offset": 0})

    async def _locked_offset(self, connection: AsyncConnection, name: str) -> int:
        """Lock a spool_progress row and read it as committed last (-1 when there is no
        such row). The no-op UPDATE comes first: on SQLite it takes the write lock (so
        the read that follows is the newest state), on PostgreSQL and MariaDB the row
        lock, waiting for a transaction that holds it; then a locking read (the newest
        committed row, whatever snapshot the transaction holds)."""
        await connection.execute(update(spool_progress).where(spool_progress.c.file == name)
                                 .values(offset=spool_progress.c.offset))
        value = (await connection.execute(
            select(spool_progress.c.offset).where(spool_progress.c.file == name)
            .with_for_update())).scalar()
        return -1 if value is None else int(value)

    async def _save_offset(self, connection: AsyncConnection, name: str, offset: int) -> None:
        await connection.execute(update(spool_progress).where(spool_progress.c.file == name)
                                 .values(offset=offset))

    async def _replay_step(self, path: Path, limit: int,
                           connection: AsyncConnection) -> _ReplayStep:
        """One transaction of replay from the committed offset: up to ``limit`` rows, or
        one in-doubt batch (skipped when its writer's marker shows it committed)."""
        offset = await self._locked_offset(connection, path.name)
        lines = self.spool.read_lines(path, offset, limit)
        if not lines:
            return _ReplayStep(offset, [], 0, empty=True)
        first, after_first = lines[0]
        if first.get("kind") == IN_DOUBT:
            skipped = 0
            end = after_first
            committed = await self._locked_offset(connection, str(first["writer"]))
            if committed >= int(first["seq"]):
                batch = self.spool.read_lines(path, after_first, int(first["rows"]))
                skipped = len(batch)
                end = batch[-1][1] if batch else after_first
            await self._save_offset(connection, path.name, end)
            return _ReplayStep(end, [], skipped, empty=False)
        rows: list[dict[str, Any]] = []
        end = offset
        for row, after in lines:
            if row.get("kind") == IN_DOUBT:
                break
            rows.append(row)
            end = after
        await write_rows(connection, rows)
        await self._save_offset(connection, path.name, end)
        return _ReplayStep(end, rows, 0, empty=False)

    async def _quarantine_step(self, path: Path, error: BaseException | None,
                               connection: AsyncConnection) -> None:
        """Set the refused row at the committed offset aside and move past it. It is
        quarantined before the offset commits: a failure here may quarantine it twice,
        never lose it."""
        offset = await self._locked_offset(connection, path.name)
        lines = self.spool.read_lines(path, offset, 1)
        if lines:
            self._quarantine([lines[0][0]], error)
            await self._save_offset(connection, path.name, lines[0][1])

    # -- transactions with a deadline -------------------------------------------------

    async def _bounded(self, work: Callable[[AsyncConnection], Awaitable[T]], timeout: float
                       ) -> tuple[_Outcome, BaseException | None, T | None]:
        """Run ``work`` in one transaction, abandoned after ``timeout`` seconds; return
        the outcome, the error and the result. Errors other than the database's or the
        rows' (bugs) are raised.

        On SQLite the wait for another connection's lock is bounded by SQLite itself
        (its busy timeout set to ``timeout`` for this transaction), which fails the
        statement cleanly; the task is abandoned only a little later, should the disk
        itself stall."""
        sqlite = self.engine.dialect.name == "sqlite"
        task = asyncio.ensure_future(self._in_transaction(work, timeout if sqlite else None))
        try:
            done, _ = await asyncio.wait(
                {task}, timeout=timeout + self.SQLITE_SLACK if sqlite else timeout)
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            self.timeouts += 1
            return _Outcome.FAILED, TimeoutError(f"no answer within {timeout:g}s"), None
        error = task.exception()
        if error is None:
            return _Outcome.DONE, None, task.result()
        if refuses_rows(error):
            return _Outcome.REFUSED, error, None
        if isinstance(error, SQLAlchemyError | OSError | ConnectionError | TimeoutError):
            if sqlite and "locked" in str(error):
                self.timeouts += 1
            return _Outcome.FAILED, error, None
        raise error

    async def _in_transaction(self, work: Callable[[AsyncConnection], Awaitable[T]],
                              sqlite_busy: float | None = None) -> T:
        busy_ms = None if sqlite_busy is None else max(1, int(sqlite_busy * 1000))
        if busy_ms == SQLITE_BUSY_TIMEOUT_MS:
            busy_ms = None  # the connection's own already (two statements saved a batch)
        connection = await self.engine.connect()
        try:
            await connection.begin()
            if busy_ms is not None:
                # pysqlite sends no BEGIN before a PRAGMA: it applies at once.
                await connection.exec_driver_sql(f"PRAGMA busy_timeout={busy_ms}")
            result = await work(connection)
            await connection.commit()
        except asyncio.CancelledError:
            # Abandoned (deadline or shutdown) while the driver may still be busy.
            with contextlib.suppress(SQLAlchemyError, OSError):
                if self.engine.dialect.name == "sqlite":
                    # No server to hang: the statement in flight ends within the busy
                    # timeout and the rollback queued behind it frees the write lock.
                    await connection.rollback()
                else:
                    # A rollback could hang as long as the server does: the connection
                    # is dropped instead, and the server rolls back what it had not
                    # committed.
                    await connection.invalidate()
            raise
        except BaseException:
            with contextlib.suppress(SQLAlchemyError, OSError):
                await connection.rollback()
            raise
        finally:
            with contextlib.suppress(SQLAlchemyError, OSError):
                if busy_ms is not None and not connection.invalidated:
                    await connection.exec_driver_sql(
                        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                await connection.close()
        return result

    def _abandon(self, task: asyncio.Future[Any]) -> None:
        """Give up on a transaction that hangs: cancel it and let it end on its own (its
        driver may still be waiting for the server)."""
        task.cancel()
        self._abandoned.add(task)

        def ended(done: asyncio.Future[Any]) -> None:
            self._abandoned.discard(done)
            if not done.cancelled() and done.exception() is not None:
                self.logger.debug("abandoned write ended with %r", done.exception())

        task.add_done_callback(ended)

    # -- state -------------------------------------------------------------------------

    def _announce_blocks(self, rows: list[dict[str, Any]]) -> None:
        if self.on_block is not None and any(row.get("kind") == ACCEPTED for row in rows):
            self.on_block()

    def _down(self, exc: BaseException | None) -> None:
        if self.database_up:
            self.logger.warning("database unavailable, spooling shares to %s: %s",
                                self.spool.directory, exc)
        self.database_up = False

    def _up(self) -> None:
        if not self.database_up:
            self.logger.info("database is back; replaying spooled shares")
        self.database_up = True
