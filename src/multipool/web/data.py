"""What the pages and the API show of one pool, read from its database, read-only.

The web process opens each coin's database read-only: on SQLite the file itself
(``mode=ro``, the web user in the database files' group), on PostgreSQL and MariaDB as
the read-only role ``multipool_web``. Where the database is comes from the engine's
``status.json`` (``database``: backend, path or host/port/name, never a credential).

Every figure states its window. Money is in the coin's smallest unit (int). Times are
tz-aware UTC datetimes. Answers are cached for a few seconds per query and arguments, so
many clients loading one page cost one query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.history import (
    BlockEntry,
    batch_page,
    block_page,
    blocks_since,
    has_history,
    miner_money,
    miner_payment_page,
    newest_block,
)
from multipool.accounting.schema import blocks
from multipool.accounting.stats import (
    EXACT_LAST_SHARE,
    RoundTally,
    WorkerTotals,
    active_miners,
    hashes_per_difficulty,
    hashrate_history,
    miner_ranking,
    miner_rejects,
    minute_of,
    network_difficulty_in_shares,
    pool_rejects,
    update_round,
    window_totals,
    worker_totals,
)
from multipool.chain.pow import ALGORITHMS
from multipool.ops.coins import WEB_SECRET  # the web role's password, by `coin add`
from multipool.web.cache import AnswerCache
from multipool.web.database import ReadOnlyDatabase, as_database, open_read_only
from multipool.web.status import PREFIX_RE, DatabaseLocation, PoolStatus, StatusReader

T = TypeVar("T")

# The windows the pages show hashrate over, in seconds: 10 minutes, 1 hour, 24 hours.
WINDOWS = (600, 3600, 86400)
# The most rows one page of a list may hold (?per_page= above it is refused).
MAX_PER_PAGE = 100
# Pages past this are clamped to it (the caller refuses them first): keeps every offset
# a small integer on every backend.
MAX_PAGE = 1_000_000
# The longest hashrate chart or miner window, in hours (the statistics are kept longer,
# but a page never needs more).
MAX_HOURS = 24 * 7
RECENT, DAY = WINDOWS[0], WINDOWS[-1]

# How long an answer is served before it is read again, in seconds.
CACHE_SECONDS = 5.0
# How long a ranking of miners over more than an hour is served (see miners()).
LONG_CACHE_SECONDS = 60.0
# Answers kept per pool: every list page and miner asked for in the last seconds.
CACHE_ENTRIES = 2048
# Confirmations a block needs when the status does not say (an older engine): the
# Bitcoin family's coinbase maturity and the block tracker's margin.
DEFAULT_MATURITY = 101
# A database that could not be opened is tried again after this many seconds.
RETRY_AFTER = 30.0
# status.json is re-read (for the daemon's tip) at most this often, in seconds.
STATUS_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class Paged(Generic[T]):
    """One page of a list: ``page`` counts from 1; ``total`` rows in the whole list."""

    items: tuple[T, ...]
    page: int
    per_page: int
    total: int


@dataclass(frozen=True, slots=True)
class HashratePoint:
    """The average hashrate (hashes per second) of the bucket starting at ``time``."""

    time: datetime
    hashrate: float


class HashrateSeries(Sequence[HashratePoint]):
    """Hashrate per bucket, oldest first: point ``i`` is the bucket starting ``i``
    buckets after ``start``. Kept as a tuple of floats, made points when read: a cached
    day of a miner (144 buckets) is then one object the garbage collector scans (it
    leaves a tuple of floats alone) instead of 145, and a web process caches a
    thousand of them."""

    __slots__ = ("bucket", "rates", "start")

    def __init__(self, start: datetime, bucket_seconds: int, rates: Sequence[float]):
        self.start, self.bucket = start, timedelta(seconds=bucket_seconds)
        self.rates = tuple(rates)

    @classmethod
    def of(cls, points: Sequence[tuple[datetime, float]], bucket_seconds: int
           ) -> HashrateSeries:
        """From ``(bucket start, H/s)`` pairs, one per bucket with no gap."""
        start = points[0][0] if points else datetime.fromtimestamp(0, UTC)
        return cls(start, bucket_seconds, [rate for _, rate in points])

    def __len__(self) -> int:
        return len(self.rates)

    @overload
    def __getitem__(self, index: int) -> HashratePoint: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[HashratePoint, ...]: ...

    def __getitem__(self, index: int | slice) -> HashratePoint | tuple[HashratePoint, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self.rates))))
        if index < 0:
            index += len(self.rates)
        if not 0 <= index < len(self.rates):
            raise IndexError("hashrate series index out of range")
        return HashratePoint(self.start + index * self.bucket, self.rates[index])

    def __iter__(self) -> Iterator[HashratePoint]:
        for index, rate in enumerate(self.rates):
            yield HashratePoint(self.start + index * self.bucket, rate)


@dataclass(frozen=True, slots=True)
class BlockRow:
    height: int
    hash: str
    time: datetime
    status: str  # candidate | pending | confirmed | orphaned
    confirmations: int | None  # from the daemon's tip in status.json; None if unknown
    maturity: int  # confirmations a pending block needs to be confirmed
    reward: int  # smallest unit
    effort: float | None  # round difficulty / network difficulty (1.0 = 100 %)
    finder: str  # address; "" when found outside any share (chain scan)
    worker: str


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """One payment batch (one transaction) of the pool."""

    batch_id: str
    time: datetime
    txid: str | None
    status: str  # the batch's state: intent | broadcast | confirmed | voiding | failed
    amount: int  # paid to miners, smallest unit
    fee: int  # network fee, smallest unit
    recipients: int


@dataclass(frozen=True, slots=True)
class MinerPayment:
    """What one payment batch paid one miner."""

    batch_id: str
    time: datetime
    txid: str | None
    status: str
    amount: int


@dataclass(frozen=True, slots=True)
class MinerRow:
    """A miner in a list of miners, over ``window`` seconds."""

    address: str
    hashrate: float
    workers: int
    accepted: int
    rejected: int
    window: int


@dataclass(frozen=True, slots=True)
class WorkerRow:
    name: str
    hashrate: float  # over the last 600 s
    accepted: int  # shares in the last 24 h
    rejected: int
    # Exact within ``offline_after`` minutes (5 at least), else the start of its
    # minute.
    last_share: datetime | None
    online: bool  # a share in the last ``offline_after`` minutes


@dataclass(frozen=True, slots=True)
class PoolFigures:
    hashrate: dict[int, float]  # window seconds (WINDOWS) -> hashes per second
    miners: int  # addresses with a share in the last 600 s
    workers: int  # address + worker pairs with a share in the last 600 s
    blocks_24h: int  # blocks found in 24 h, orphans and candidates left out
    last_block: BlockRow | None
    round_effort: float | None  # shares since the last block / network difficulty
    accepted_24h: int
    rejects_24h: dict[str, int]  # reason (words, e.g. "stale") -> count


@dataclass(frozen=True, slots=True)
class MinerFigures:
    address: str
    has_history: bool  # False: a valid address the pool has never seen
    hashrate: dict[int, float]  # window seconds (WINDOWS) -> hashes per second
    immature: int  # credits of blocks not yet confirmed, smallest unit
    unpaid: int  # balance owed, smallest unit
    paid: int  # sent in payments (broadcast or confirmed), smallest unit
    workers: tuple[WorkerRow, ...]
    rejects_24h: dict[str, int]  # reason -> count
    round_share: float | None  # this miner's fraction (0..1) of the current round
    round_difficulty: float  # this miner's accepted difficulty in the current round


@dataclass(frozen=True, slots=True)
class MinerPage:
    """What a miner's page shows, read in one call to the database."""

    figures: MinerFigures
    series: Sequence[HashratePoint]  # its hashrate chart (a HashrateSeries)
    payments: Paged[MinerPayment]  # the first page of what it was paid


class PoolReader:
    """One pool's database, read-only, with a short cache per query and arguments.

    ``database`` is the pool's database, opened so that it can only be read (PoolReaders
    opens it so; an async engine is taken as one); ``algorithm`` the coin's, for
    hashrates. Each answer is one call to the database: the queries of a page's figures
    run together (see web/database.py). ``tip`` (the daemon's height, for
    confirmations) and ``maturity`` follow the pool's status.json: PoolReaders keeps them
    current. ``clock`` gives "now" (tests pin it)."""

    def __init__(self, database: ReadOnlyDatabase | AsyncEngine, *, algorithm: str,
                 maturity: int = DEFAULT_MATURITY, tip: int | None = None,
                 offline_after: int = 10, cache_seconds: float = CACHE_SECONDS,
                 clock: Callable[[], datetime] | None = None,
                 logger: logging.Logger | None = None):
        self.database = as_database(database)
        self.algorithm = algorithm
        self.hashes_per_difficulty = hashes_per_difficulty(algorithm)
        self.maturity = maturity
        self.tip = tip
        self.offline_after = offline_after
        self.clock = clock or (lambda: datetime.now(UTC))
        self.logger = logger or logging.getLogger("multipool.web.data")
        self.cache = AnswerCache(cache_seconds, max_entries=CACHE_ENTRIES, logger=self.logger)
        self._round = RoundTally()

    # -- the pool ---------------------------------------------------------------------

    async def pool(self) -> PoolFigures:
        return await self.cache.get(("pool",), self._pool)

    async def _pool(self) -> PoolFigures:
        now = self.clock()

        def read(connection: Connection) -> tuple[Any, ...]:
            return (window_totals(connection, WINDOWS, now=now),
                    active_miners(connection, RECENT, now=now),
                    blocks_since(connection, now - timedelta(days=1)),
                    newest_block(connection), pool_rejects(connection, DAY, now=now))

        totals, active, found, last, rejects = await self.database.run(read)
        tally = await self._round_tally()
        effort = None
        if tally.network_difficulty:
            effort = tally.total / network_difficulty_in_shares(tally.network_difficulty,
                                                                self.algorithm)
        return PoolFigures(
            hashrate=self._hashrates(totals.difficulty), miners=active.miners,
            workers=active.workers, blocks_24h=found,
            last_block=None if last is None else self._block_row(last),
            round_effort=effort, accepted_24h=totals.accepted, rejects_24h=rejects)

    async def hashrate_series(self, address: str | None = None, *, hours: int = 24,
                              bucket_minutes: int = 10) -> HashrateSeries:
        """The pool's (or one miner's) hashrate per bucket over the last ``hours``,
        oldest first, every bucket present (0.0 where no share came)."""
        hours, bucket_minutes = _series_span(hours, bucket_minutes)

        async def compute() -> HashrateSeries:
            return await self.database.run(self._read_series, address, hours,
                                           bucket_minutes, self.clock())

        return await self.cache.get(("series", address, hours, bucket_minutes), compute)

    def _read_series(self, connection: Connection, address: str | None, hours: int,
                     bucket_minutes: int, now: datetime) -> HashrateSeries:
        points = hashrate_history(connection, algorithm=self.algorithm,
                                  since=minute_of(now) - timedelta(hours=hours), now=now,
                                  bucket_seconds=bucket_minutes * 60, address=address)
        return HashrateSeries.of(points, bucket_minutes * 60)

    async def blocks(self, page: int = 1, per_page: int = 20) -> Paged[BlockRow]:
        """Newest first; candidates (not yet submitted) left out."""
        page, per_page = _clamp(page, per_page)

        async def compute() -> tuple[list[BlockEntry], int]:
            return await self.database.run(block_page, limit=per_page,
                                           offset=(page - 1) * per_page)

        entries, total = await self.cache.get(("blocks", page, per_page), compute)
        # Confirmations follow the tip of now, not of when the rows were read.
        return Paged(tuple(self._block_row(e) for e in entries), page, per_page, total)

    async def payments(self, page: int = 1, per_page: int = 20) -> Paged[PaymentRow]:
        """Newest first."""
        page, per_page = _clamp(page, per_page)

        async def compute() -> Paged[PaymentRow]:
            entries, total = await self.database.run(batch_page, limit=per_page,
                                                     offset=(page - 1) * per_page)
            return Paged(tuple(PaymentRow(batch_id=e.id, time=e.created, txid=e.txid,
                                          status=e.status, amount=e.total, fee=e.fee,
                                          recipients=e.recipients) for e in entries),
                         page, per_page, total)

        return await self.cache.get(("payments", page, per_page), compute)

    async def miners(self, page: int = 1, per_page: int = 20, *,
                     window: int = 3600) -> Paged[MinerRow]:
        """Miners with shares in the window, highest hashrate first (page 1 = top).
        ValueError for a window that is not whole minutes up to MAX_HOURS hours (the
        caller offers WINDOWS)."""
        page, per_page = _clamp(page, per_page)
        if window <= 0 or window % 60 or window > MAX_HOURS * 3600:
            raise ValueError(f"a window is whole minutes up to {MAX_HOURS} hours, "
                             f"not {window} s")

        async def compute() -> tuple[MinerRow, ...]:
            ranked = await self.database.run(miner_ranking, window, now=self.clock())
            scale = self.hashes_per_difficulty / window
            return tuple(MinerRow(address=r.address, hashrate=r.difficulty * scale,
                                  workers=r.workers, accepted=r.accepted,
                                  rejected=r.rejected, window=window) for r in ranked)

        # The whole ranking is read once per window and every page sliced from it. Over
        # hours it reads every miner's minutes (the slowest query here) and moves
        # slowly: it is read again at most once a minute.
        ranked = await self.cache.get(("ranking", window), compute,
                                      ttl=max(self.cache.ttl, LONG_CACHE_SECONDS)
                                      if window > RECENT * 6 else None)
        offset = (page - 1) * per_page
        return Paged(ranked[offset:offset + per_page], page, per_page, len(ranked))

    # -- one miner --------------------------------------------------------------------

    async def miner(self, address: str) -> MinerFigures:
        async def compute() -> MinerFigures:
            now = self.clock()
            rows = await self.database.run(self._read_miner, address, now)
            return self._miner_figures(address, rows, now, await self._round_tally())

        return await self.cache.get(("miner", address), compute)

    async def miner_page(self, address: str, *, hours: int = 24, bucket_minutes: int = 10,
                         per_page: int = 20) -> MinerPage:
        """A miner's figures (as :meth:`miner`), its hashrate chart (as
        :meth:`hashrate_series`) and the first page of its payments (as
        :meth:`miner_payments`), read in one call to the database: a page's dozen
        statements one after another in one thread, not three calls contending."""
        hours, bucket_minutes = _series_span(hours, bucket_minutes)
        _, per_page = _clamp(1, per_page)

        async def compute() -> MinerPage:
            now = self.clock()

            def read(connection: Connection) -> tuple[Any, ...]:
                return (self._read_miner(connection, address, now),
                        self._read_series(connection, address, hours, bucket_minutes, now),
                        self._read_payments(connection, address, 1, per_page))

            rows, series, payments = await self.database.run(read)
            return MinerPage(self._miner_figures(address, rows, now,
                                                 await self._round_tally()),
                             series, payments)

        return await self.cache.get(("miner_page", address, hours, bucket_minutes,
                                     per_page), compute)

    def _read_miner(self, connection: Connection, address: str,
                    now: datetime) -> tuple[Any, ...]:
        return (has_history(connection, address), miner_money(connection, address),
                worker_totals(connection, address, windows=WINDOWS,
                              exact_seconds=self._exact_seconds, now=now),
                miner_rejects(connection, address, DAY, now=now))

    def _miner_figures(self, address: str, rows: tuple[Any, ...], now: datetime,
                       tally: RoundTally) -> MinerFigures:
        seen, money, workers, rejects = rows
        mine, pool = tally.of(address), tally.total
        # The miner's figures are its workers' summed (one read of its rows for both).
        difficulty = {window: sum(w.difficulty[window] for w in workers)
                      for window in WINDOWS}
        return MinerFigures(
            address=address, has_history=seen,
            hashrate=self._hashrates(difficulty),
            immature=money.immature, unpaid=money.unpaid, paid=money.paid,
            workers=tuple(self._worker_row(w, now) for w in workers),
            rejects_24h=rejects, round_share=mine / pool if pool > 0 else None,
            round_difficulty=mine)

    async def miner_payments(self, address: str, page: int = 1,
                             per_page: int = 20) -> Paged[MinerPayment]:
        """Newest first."""
        page, per_page = _clamp(page, per_page)

        async def compute() -> Paged[MinerPayment]:
            return await self.database.run(self._read_payments, address, page, per_page)

        return await self.cache.get(("miner_payments", address, page, per_page), compute)

    @staticmethod
    def _read_payments(connection: Connection, address: str, page: int,
                       per_page: int) -> Paged[MinerPayment]:
        entries, total = miner_payment_page(connection, address, limit=per_page,
                                            offset=(page - 1) * per_page)
        return Paged(tuple(MinerPayment(batch_id=e.batch_id, time=e.created,
                                        txid=e.txid, status=e.status, amount=e.amount)
                           for e in entries), page, per_page, total)

    async def workers(self, address: str) -> tuple[WorkerRow, ...]:
        """The miner's workers seen in the last 24 h, by name (those of :meth:`miner`,
        read and cached with its other figures)."""
        return (await self.miner(address)).workers

    async def close(self) -> None:
        await self.cache.close()
        await self.database.dispose()

    # -- helpers ----------------------------------------------------------------------

    async def _round_tally(self) -> RoundTally:
        async def compute() -> RoundTally:
            self._round = await self.database.run(update_round, self._round)
            return self._round

        return await self.cache.get(("round",), compute)

    def _hashrates(self, difficulty: dict[int, float]) -> dict[int, float]:
        return {window: difficulty[window] * self.hashes_per_difficulty / window
                for window in WINDOWS}

    def _block_row(self, entry: BlockEntry) -> BlockRow:
        confirmations = None
        if self.tip is not None and entry.status in ("pending", "confirmed"):
            confirmations = max(0, self.tip - entry.height + 1)
        return BlockRow(height=entry.height, hash=entry.hash, time=entry.time,
                        status=entry.status, confirmations=confirmations,
                        maturity=self.maturity, reward=entry.reward, effort=entry.effort,
                        finder=entry.address, worker=entry.worker)

    @property
    def _exact_seconds(self) -> int:
        """How far back workers' newest shares are exact: offline_after at least, so that
        "online" is exact, and the minutes the roll-up may not have reached yet."""
        return max(self.offline_after * 60, EXACT_LAST_SHARE)

    def _worker_row(self, totals: WorkerTotals, now: datetime) -> WorkerRow:
        online = (totals.last_share is not None
                  and now - totals.last_share <= timedelta(minutes=self.offline_after))
        return WorkerRow(name=totals.worker,
                         hashrate=totals.difficulty[RECENT] * self.hashes_per_difficulty
                         / RECENT,
                         accepted=totals.accepted, rejected=totals.rejected,
                         last_share=totals.last_share, online=online)


def _series_span(hours: int, bucket_minutes: int) -> tuple[int, int]:
    """A chart's hours and bucket minutes, checked and bounded (MAX_HOURS; a bucket no
    longer than the chart)."""
    if hours <= 0 or bucket_minutes <= 0:
        raise ValueError("hours and bucket_minutes must be positive")
    return min(hours, MAX_HOURS), min(bucket_minutes, hours * 60)


def _clamp(page: int, per_page: int) -> tuple[int, int]:
    """The caller validates ``page`` and ``per_page``; clamped here all the same, so no
    argument can ask for more than MAX_PER_PAGE rows or an offset past any list."""
    return min(max(1, page), MAX_PAGE), min(max(1, per_page), MAX_PER_PAGE)


@dataclass(slots=True)
class _Opened:
    location: DatabaseLocation
    reader: PoolReader


class PoolReaders:
    """Every pool's reader, opened on first use from ``<root>/web/<prefix>/status.json``
    (``database``) and, for PostgreSQL/MariaDB, ``<root>/web-database.secret``.

    A database that cannot be opened is logged once with the reason (and again when the
    reason changes), retried after RETRY_AFTER seconds, and its pool gets None meanwhile.
    A pool whose status names another database (moved, restored) gets a new reader."""

    def __init__(self, root: Path, *, offline_after: int = 10,
                 cache_seconds: float = CACHE_SECONDS,
                 logger: logging.Logger | None = None):
        self.root = root
        self.offline_after = offline_after
        self.cache_seconds = cache_seconds
        self.logger = logger or logging.getLogger("multipool.web.data")
        self.statuses = StatusReader(root, logger=self.logger)
        self._opened: dict[str, _Opened] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # prefix -> (reason, when)
        self._status: dict[str, tuple[float, PoolStatus | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, prefix: str, status: PoolStatus | None = None) -> PoolReader | None:
        """The pool's reader; None when its database cannot be opened (the pages then
        show what status.json says and that the statistics are unavailable). A caller
        that has just read the pool's status passes it, so the file is not read twice."""
        if not PREFIX_RE.fullmatch(prefix):
            return None
        if status is None:
            status = self._read_status(prefix)
        if status is None or status.database is None:
            self._fail(prefix, "its status.json does not say where its database is "
                               "(no status yet, or an engine older than this web)")
            return None
        opened = self._opened.get(prefix)
        if opened is not None and opened.location == status.database:
            self._follow(opened.reader, status)
            return opened.reader
        lock = self._locks.setdefault(prefix, asyncio.Lock())
        async with lock:
            opened = self._opened.get(prefix)
            if opened is not None and opened.location == status.database:
                return opened.reader
            if opened is not None:
                del self._opened[prefix]
                await opened.reader.close()
            failed = self._failed.get(prefix)
            if failed is not None and time.monotonic() - failed[1] < RETRY_AFTER:
                return None
            reader = await self._open(prefix, status)
            if reader is None:
                return None
            self._opened[prefix] = _Opened(status.database, reader)
            return reader

    async def close(self) -> None:
        opened, self._opened = self._opened, {}
        for entry in opened.values():
            await entry.reader.close()

    def _read_status(self, prefix: str) -> PoolStatus | None:
        """The pool's status, read at most once a second (each request asks)."""
        now = time.monotonic()
        cached = self._status.get(prefix)
        if cached is not None and now - cached[0] < STATUS_EVERY:
            return cached[1]
        read = self.statuses.read(prefix)
        status = read if isinstance(read, PoolStatus) else None
        self._status[prefix] = (now, status)
        return status

    def _follow(self, reader: PoolReader, status: PoolStatus) -> None:
        reader.tip = status.blocks
        if status.maturity is not None:
            reader.maturity = status.maturity

    async def _open(self, prefix: str, status: PoolStatus) -> PoolReader | None:
        location = status.database
        assert location is not None
        if status.algorithm not in ALGORITHMS:
            self._fail(prefix, f"its status.json names no known algorithm "
                               f"({status.algorithm!r})")
            return None
        password = None
        if location.backend != "sqlite":
            try:
                password = (self.root / WEB_SECRET).read_text().strip()
            except OSError as exc:
                self._fail(prefix, f"cannot read {self.root / WEB_SECRET}: {exc.strerror}")
                return None
        database = open_read_only(location, password=password)
        try:
            # Opens the file or logs in, and finds the schema: a database not yet
            # migrated is not one to read.
            await database.run(_count_blocks)
        except (SQLAlchemyError, OSError) as exc:
            await database.dispose()
            reason = _reason(exc)
            if location.backend == "sqlite" and not Path(f"{location.path}-shm").exists():
                # Read-only, a WAL database needs the -shm file its writer creates.
                reason = "its engine has not opened it (no -shm file yet)"
            self._fail(prefix, f"cannot read its database ({_where(location)}): {reason}")
            return None
        if self._failed.pop(prefix, None) is not None:
            self.logger.info("pool %s: its database is readable again (%s)", prefix,
                             _where(location))
        reader = PoolReader(database, algorithm=status.algorithm,
                            maturity=status.maturity or DEFAULT_MATURITY, tip=status.blocks,
                            offline_after=self.offline_after,
                            cache_seconds=self.cache_seconds, logger=self.logger)
        return reader

    def _fail(self, prefix: str, reason: str) -> None:
        previous = self._failed.get(prefix)
        self._failed[prefix] = (reason, time.monotonic())
        if previous is None or previous[0] != reason:
            self.logger.warning("pool %s: statistics unavailable: %s", prefix, reason)


def _count_blocks(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(blocks)).scalar_one())


def _where(location: DatabaseLocation) -> str:
    if location.backend == "sqlite":
        return str(location.path)
    return f"{location.backend} {location.host}:{location.port or 'default'}/{location.name}"


def _reason(exc: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's statement and parameters."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc) or type(exc).__name__
