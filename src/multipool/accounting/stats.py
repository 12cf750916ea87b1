"""Share statistics: shares rolled up per minute, and the figures the web pages show.

:class:`StatsRoller` adds new shares, in id order, to ``stats_minute`` (per minute,
address and worker: accepted count, accepted difficulty, rejected count), to
``stats_pool_minute`` (the same summed over the pool), to ``stats_rejects`` (per minute
and stratum reject code) and to ``stats_miner_rejects`` (the same per address). Each
chunk of shares is read, added and recorded as rolled (settings row
``stats_last_share_id``) in one transaction, so a crash neither counts a share twice nor
skips one. This relies on share ids becoming visible in id order, which the coin's
single share writer guarantees (writer.py).

Hashrate comes from difficulty: a share of difficulty ``d`` takes on average
``d * 2**256 / diff1_target`` hashes (``2**48 / 0xffff``, about ``2**32``, per unit of
sha256d difficulty; ``2**16`` times fewer for scrypt), so over a window::

    hashrate = sum(accepted_difficulty) * 2**256 / diff1_target / window_seconds

A window is made of whole minutes and ends where the current minute starts, because the
current minute is still being rolled. Minutes are stored and returned as UTC datetimes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    Subquery,
    Table,
    Update,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from multipool.accounting.schema import (
    CANDIDATE,
    blocks,
    payment_batches,
    settings,
    shares,
    stats_hour,
    stats_miner_rejects,
    stats_minute,
    stats_pool_minute,
    stats_rejects,
)
from multipool.chain.pow import ALGORITHMS, SHA256D_DIFF1_TARGET
from multipool.errors import PoolError
from multipool.stratum.protocol import (
    DUPLICATE,
    JOB_NOT_FOUND,
    LOW_DIFFICULTY,
    NOT_SUBSCRIBED,
    OTHER,
    UNAUTHORIZED,
)

# The settings row holding the id of the last share rolled up.
PROGRESS = "stats_last_share_id"

# An engine, or a connection the caller already holds (several queries, one snapshot).
Source = AsyncEngine | AsyncConnection

P = ParamSpec("P")
T = TypeVar("T")


class StatsConflict(PoolError, RuntimeError):
    """Another roller moved the progress while this one was rolling; nothing was added."""


def as_utc(time: datetime) -> datetime:
    """Given a datetime from the database, return it tz-aware in UTC (SQLite and MariaDB
    hand back naive datetimes, which hold UTC here)."""
    return time.replace(tzinfo=UTC) if time.tzinfo is None else time.astimezone(UTC)


def minute_of(time: datetime) -> datetime:
    """Given a datetime, return the start of its minute in UTC.

    >>> minute_of(datetime(2026, 1, 2, 3, 4, 59, 999, tzinfo=UTC))
    datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)
    """
    return as_utc(time).replace(second=0, microsecond=0)


def hashes_per_difficulty(algorithm: str) -> float:
    """Given an algorithm name, return the hashes one share of difficulty 1 takes on
    average: ``2**256 / diff1_target``.

    >>> hashes_per_difficulty("sha256d") == 2**48 / 0xFFFF
    True
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    return 2**256 / ALGORITHMS[algorithm].diff1_target


def _window(window_seconds: float, now: datetime | None) -> tuple[datetime, datetime]:
    """The minutes [start, end) of a window ending where ``now``'s minute starts."""
    if window_seconds <= 0 or window_seconds % 60:
        raise ValueError(f"a window is a positive number of whole minutes, "
                         f"not {window_seconds} s")
    end = minute_of(now or datetime.now(UTC))
    return end - timedelta(seconds=window_seconds), end


def _fold(connection: AsyncConnection | Connection) -> Callable[[str], str]:
    """How the database compares addresses and workers in keys. MariaDB's default
    utf8mb4 collation ignores case, so ``rig1`` and ``Rig1`` are one stats row there;
    worker names and addresses are ASCII (the stratum session checks them), for which
    ``str.lower`` is that comparison."""
    return str.lower if connection.dialect.name in ("mysql", "mariadb") else str


@contextlib.asynccontextmanager
async def _connection(source: Source) -> AsyncIterator[AsyncConnection]:
    if isinstance(source, AsyncConnection):
        yield source
    else:
        async with source.connect() as connection:
            yield connection


async def read(source: Source, query: Callable[Concatenate[Connection, P], T],
               *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one of the read functions below (``query(connection, ...)``, plain
    SQLAlchemy on a synchronous connection) on an async engine or connection.

    The web's reads are written synchronously so that its SQLite reader can run a whole
    page's queries in one worker thread (web/database.py): through the async driver each
    statement costs several hops between threads, more than most of these queries."""
    async with _connection(source) as connection:
        return await connection.run_sync(query, *args, **kwargs)


class epoch_seconds(FunctionElement[int]):  # an SQL function, named as one
    """Seconds from 1970-01-01 00:00 to a naive UTC ``DATETIME``/``TIMESTAMP`` column,
    as an SQL integer, whatever the session's time zone."""

    type = Integer()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch_seconds, "postgresql")
def _epoch_seconds_postgresql(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS BIGINT)"


@compiles(epoch_seconds, "mysql")
@compiles(epoch_seconds, "mariadb")
def _epoch_seconds_mysql(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    # Not UNIX_TIMESTAMP: that reads a DATETIME in the session's time zone.
    return (f"TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', "
            f"{compiler.process(element.clauses, **kw)})")


def _bucket(column: Any) -> ColumnElement[Any]:
    """The bucket of ``:bucket_seconds`` from ``:start_epoch`` (seconds since 1970) that
    a time column falls in (0, 1, ...), computed by the database: the rows it returns
    are buckets."""
    # Integer division, the time converted once a row (rows are never before the start).
    return ((epoch_seconds(column) - bindparam("start_epoch", type_=Integer))
            // bindparam("bucket_seconds", type_=Integer))


# -- rolling up ---------------------------------------------------------------------------

@dataclass(slots=True)
class _Tally:
    address: str
    worker: str
    accepted: int = 0
    difficulty: float = 0.0
    rejected: int = 0


def _add_statement(table: Table, key: str) -> Update:
    """Add deltas to the row of one period, address and worker of ``table``."""
    return (update(table)
            .where(table.c[key] == bindparam("k_minute"),
                   table.c.address == bindparam("k_address"),
                   table.c.worker == bindparam("k_worker"))
            .values(accepted=table.c.accepted + bindparam("d_accepted"),
                    accepted_difficulty=table.c.accepted_difficulty
                    + bindparam("d_difficulty"),
                    rejected=table.c.rejected + bindparam("d_rejected")))


_ADD_MINUTE = _add_statement(stats_minute, "minute")
_ADD_HOUR = _add_statement(stats_hour, "hour")

_ADD_POOL_MINUTE = (
    update(stats_pool_minute)
    .where(stats_pool_minute.c.minute == bindparam("k_minute"))
    .values(accepted=stats_pool_minute.c.accepted + bindparam("d_accepted"),
            accepted_difficulty=stats_pool_minute.c.accepted_difficulty
            + bindparam("d_difficulty"),
            rejected=stats_pool_minute.c.rejected + bindparam("d_rejected")))

_ADD_REJECTS = (
    update(stats_rejects)
    .where(stats_rejects.c.minute == bindparam("k_minute"),
           stats_rejects.c.reject_code == bindparam("k_code"))
    .values(count=stats_rejects.c.count + bindparam("d_count")))

_ADD_MINER_REJECTS = (
    update(stats_miner_rejects)
    .where(stats_miner_rejects.c.minute == bindparam("k_minute"),
           stats_miner_rejects.c.address == bindparam("k_address"),
           stats_miner_rejects.c.reject_code == bindparam("k_code"))
    .values(count=stats_miner_rejects.c.count + bindparam("d_count")))


async def _progress(connection: AsyncConnection) -> int | None:
    value = (await connection.execute(
        select(settings.c.value).where(settings.c.name == PROGRESS)
        .with_for_update())).scalar()
    return None if value is None else int(value)


async def _set_progress(connection: AsyncConnection, old: int | None, new: int) -> None:
    """Move the progress from ``old`` to ``new``, refusing if another roller moved it
    meanwhile (SQLite reads outside the write transaction, so the check is here)."""
    if old is None:
        # A concurrent first roll fails on the primary key instead.
        await connection.execute(insert(settings).values(name=PROGRESS, value=str(new)))
        return
    result = await connection.execute(
        update(settings).where(settings.c.name == PROGRESS, settings.c.value == str(old))
        .values(value=str(new)))
    if result.rowcount != 1:
        raise StatsConflict(f"stats progress moved away from share {old} during a roll")


def hour_of(time: datetime) -> datetime:
    """Given a datetime, return the start of its hour in UTC.

    >>> hour_of(datetime(2026, 1, 2, 3, 4, 59, tzinfo=UTC))
    datetime.datetime(2026, 1, 2, 3, 0, tzinfo=datetime.timezone.utc)
    """
    return as_utc(time).replace(minute=0, second=0, microsecond=0)


async def _add_minutes(connection: AsyncConnection,
                       tallies: dict[tuple[datetime, str, str], _Tally], *,
                       table: Table = stats_minute, key: str = "minute",
                       statement: Update = _ADD_MINUTE) -> None:
    """Add the tallies to stats_minute (or, keyed by hour, stats_hour): existing rows are
    updated, new ones inserted."""
    fold = _fold(connection)
    first, last = min(k[0] for k in tallies), max(k[0] for k in tallies)
    stored = {(as_utc(period), fold(address), fold(worker)): (address, worker)
              for period, address, worker in (await connection.execute(
                  select(table.c[key], table.c.address, table.c.worker)
                  .where(table.c[key] >= first, table.c[key] <= last)))}
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    for k, tally in tallies.items():
        if k in stored:
            address, worker = stored[k]
            updates.append({"k_minute": k[0], "k_address": address, "k_worker": worker,
                            "d_accepted": tally.accepted, "d_difficulty": tally.difficulty,
                            "d_rejected": tally.rejected})
        else:
            inserts.append({key: k[0], "address": tally.address,
                            "worker": tally.worker, "accepted": tally.accepted,
                            "accepted_difficulty": tally.difficulty,
                            "rejected": tally.rejected})
    if updates:
        await connection.execute(statement, updates)
    if inserts:
        await connection.execute(insert(table), inserts)


async def _add_hours(connection: AsyncConnection,
                     tallies: dict[tuple[datetime, str, str], _Tally]) -> None:
    """Add the tallies, summed per hour (keys already folded as the database compares
    them), to stats_hour."""
    hours: dict[tuple[datetime, str, str], _Tally] = {}
    for (minute, address, worker), tally in tallies.items():
        total = hours.setdefault((hour_of(minute), address, worker),
                                 _Tally(tally.address, tally.worker))
        total.accepted += tally.accepted
        total.difficulty += tally.difficulty
        total.rejected += tally.rejected
    await _add_minutes(connection, hours, table=stats_hour, key="hour", statement=_ADD_HOUR)


async def _add_pool_minutes(connection: AsyncConnection,
                            tallies: dict[tuple[datetime, str, str], _Tally]) -> None:
    """Add the tallies, summed per minute, to stats_pool_minute."""
    pool: dict[datetime, _Tally] = {}
    for (minute, _, _), tally in tallies.items():
        total = pool.setdefault(minute, _Tally("", ""))
        total.accepted += tally.accepted
        total.difficulty += tally.difficulty
        total.rejected += tally.rejected
    if not pool:
        return
    stored = {as_utc(minute) for minute in (await connection.execute(
        select(stats_pool_minute.c.minute)
        .where(stats_pool_minute.c.minute >= min(pool),
               stats_pool_minute.c.minute <= max(pool)))).scalars()}
    updates = [{"k_minute": minute, "d_accepted": t.accepted, "d_difficulty": t.difficulty,
                "d_rejected": t.rejected} for minute, t in pool.items() if minute in stored]
    inserts = [{"minute": minute, "accepted": t.accepted, "accepted_difficulty": t.difficulty,
                "rejected": t.rejected} for minute, t in pool.items() if minute not in stored]
    if updates:
        await connection.execute(_ADD_POOL_MINUTE, updates)
    if inserts:
        await connection.execute(insert(stats_pool_minute), inserts)


async def _add_rejects(connection: AsyncConnection,
                       rejects: Counter[tuple[datetime, int]]) -> None:
    """Add the reject counts to stats_rejects: existing rows are updated, new ones
    inserted."""
    if not rejects:
        return
    first, last = min(key[0] for key in rejects), max(key[0] for key in rejects)
    stored = {(as_utc(minute), code) for minute, code in (await connection.execute(
        select(stats_rejects.c.minute, stats_rejects.c.reject_code)
        .where(stats_rejects.c.minute >= first, stats_rejects.c.minute <= last)))}
    updates = [{"k_minute": minute, "k_code": code, "d_count": count}
               for (minute, code), count in rejects.items() if (minute, code) in stored]
    inserts = [{"minute": minute, "reject_code": code, "count": count}
               for (minute, code), count in rejects.items() if (minute, code) not in stored]
    if updates:
        await connection.execute(_ADD_REJECTS, updates)
    if inserts:
        await connection.execute(insert(stats_rejects), inserts)


async def _add_miner_rejects(connection: AsyncConnection,
                             rejects: dict[tuple[datetime, str, int], list[Any]]) -> None:
    """Add the reject counts per miner (keyed by minute, address folded as the database
    compares it, and code; valued [address, count]) to stats_miner_rejects."""
    if not rejects:
        return
    fold = _fold(connection)
    first, last = min(key[0] for key in rejects), max(key[0] for key in rejects)
    stored = {(as_utc(minute), fold(address), code): address
              for minute, address, code in (await connection.execute(
                  select(stats_miner_rejects.c.minute, stats_miner_rejects.c.address,
                         stats_miner_rejects.c.reject_code)
                  .where(stats_miner_rejects.c.minute >= first,
                         stats_miner_rejects.c.minute <= last)))}
    updates = [{"k_minute": key[0], "k_address": stored[key], "k_code": key[2],
                "d_count": count} for key, (_, count) in rejects.items() if key in stored]
    inserts = [{"minute": key[0], "address": address, "reject_code": key[2], "count": count}
               for key, (address, count) in rejects.items() if key not in stored]
    if updates:
        await connection.execute(_ADD_MINER_REJECTS, updates)
    if inserts:
        await connection.execute(insert(stats_miner_rejects), inserts)


class StatsRoller:
    """Rolls new shares up into the per-minute statistics, one chunk per transaction."""

    # Shares read per transaction: bounds memory (a few tens of MB) and lock time.
    CHUNK_SIZE = 50_000

    def __init__(self, engine: AsyncEngine, *, chunk_size: int = CHUNK_SIZE,
                 logger: logging.Logger | None = None):
        self.engine = engine
        self.chunk_size = chunk_size
        self.logger = logger or logging.getLogger(__name__)

    async def roll(self) -> int:
        """Roll up every share not rolled yet; return how many were rolled."""
        total = 0
        while True:
            rolled = await self._roll_chunk()
            total += rolled
            if rolled < self.chunk_size:
                return total

    async def _roll_chunk(self) -> int:
        async with self.engine.begin() as connection:
            last = await _progress(connection)
            rows = (await connection.execute(
                select(shares.c.id, shares.c.time, shares.c.address, shares.c.worker,
                       shares.c.difficulty, shares.c.accepted, shares.c.reject_code)
                .where(shares.c.id > (last or 0)).order_by(shares.c.id)
                .limit(self.chunk_size))).all()
            if not rows:
                return 0
            fold = _fold(connection)
            tallies: dict[tuple[datetime, str, str], _Tally] = {}
            rejects: Counter[tuple[datetime, int]] = Counter()
            miner_rejects: dict[tuple[datetime, str, int], list[Any]] = {}
            for row in rows:
                minute = minute_of(row.time)
                key = (minute, fold(row.address), fold(row.worker))
                tally = tallies.get(key)
                if tally is None:
                    tally = tallies[key] = _Tally(row.address, row.worker)
                if row.accepted:
                    tally.accepted += 1
                    tally.difficulty += float(row.difficulty)
                else:
                    tally.rejected += 1
                    code = row.reject_code or OTHER
                    rejects[minute, code] += 1
                    miner_rejects.setdefault((minute, key[1], code), [row.address, 0])[1] += 1
            # Written first: on SQLite this takes the write lock and checks nobody else
            # rolled these shares since they were read.
            await _set_progress(connection, last, rows[-1].id)
            await _add_minutes(connection, tallies)
            await _add_hours(connection, tallies)
            await _add_pool_minutes(connection, tallies)
            await _add_rejects(connection, rejects)
            await _add_miner_rejects(connection, miner_rejects)
        return len(rows)


async def prune_stats(engine: AsyncEngine, older_than: datetime) -> int:
    """Delete the statistics of minutes before ``older_than``; return the rows deleted."""
    async with engine.begin() as connection:
        deleted = 0
        for table in (stats_minute, stats_pool_minute, stats_rejects, stats_miner_rejects):
            result = await connection.execute(delete(table).where(table.c.minute < older_than))
            deleted += result.rowcount
        # An hour goes once all of it is older.
        result = await connection.execute(delete(stats_hour).where(
            stats_hour.c.hour <= older_than - timedelta(hours=1)))
        deleted += result.rowcount
    return deleted


# -- queries for the web pages and the CLI --------------------------------------------------

# The statements a miner's page runs are built once, their values passed as parameters
# (``bindparam``): building a statement and its cache key anew for each call cost
# SQLAlchemy about 0.2 ms a statement, several times what SQLite takes to answer it,
# and a miner's page runs a dozen (docs/performance.md).

@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One worker of a miner over a window."""

    worker: str
    hashrate: float  # hashes per second
    accepted: int
    rejected: int
    # The newest share of the window (exact, from the shares table), None if unknown.
    last_share: datetime | None


@dataclass(frozen=True, slots=True)
class ShareCounts:
    """Valid shares, and invalid ones per stratum reject code."""

    valid: int
    invalid: dict[int, int]

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values())


@dataclass(frozen=True, slots=True)
class ActiveMiners:
    """Addresses, and address + worker pairs, that sent shares in a window."""

    miners: int
    workers: int


async def hashrate(source: Source, *, algorithm: str, window_seconds: float,
                   now: datetime | None = None, address: str | None = None,
                   worker: str | None = None) -> float:
    """Given a window of whole minutes, return the hashrate (hashes/s) of the pool, or of
    one miner or worker, over the window ending where ``now``'s minute starts::

        sum(accepted_difficulty) * 2**256 / diff1_target / window_seconds

    e.g. 600 difficulty-1 sha256d shares in 10 minutes are ``2**48 / 0xffff`` H/s, about
    4.29 GH/s.
    """
    start, end = _window(window_seconds, now)
    query = (select(func.coalesce(func.sum(stats_minute.c.accepted_difficulty), 0.0))
             .where(stats_minute.c.minute >= start, stats_minute.c.minute < end))
    if address is not None:
        query = query.where(stats_minute.c.address == address)
    if worker is not None:
        query = query.where(stats_minute.c.worker == worker)
    async with _connection(source) as connection:
        total = (await connection.execute(query)).scalar_one()
    return float(total) * hashes_per_difficulty(algorithm) / window_seconds


def hashrate_history(connection: Connection, *, algorithm: str, since: datetime,
                     now: datetime | None = None, bucket_seconds: int = 60,
                     address: str | None = None) -> list[tuple[datetime, float]]:
    """Given a start time, return the hashrate (hashes/s) of the pool or one miner in
    buckets of ``bucket_seconds`` (whole minutes) for a chart: ``(bucket start, H/s)``,
    oldest first, empty buckets as 0, the last one ending where ``now``'s minute starts."""
    if bucket_seconds <= 0 or bucket_seconds % 60:
        raise ValueError(f"a bucket is a positive number of whole minutes, "
                         f"not {bucket_seconds} s")
    end = minute_of(now or datetime.now(UTC))
    count = max(0, math.ceil((end - minute_of(since)).total_seconds() / bucket_seconds))
    start = end - timedelta(seconds=count * bucket_seconds)
    # Summed per bucket by the database: a day of a miner's minutes is up to 1,440
    # rows a worker, its chart 144 buckets.
    rows = connection.execute(_history_query(per_address=address is not None), {
        "start": start, "end": end, "address": address,
        "start_epoch": int(start.timestamp()), "bucket_seconds": bucket_seconds}).all()
    totals = [0.0] * count
    for index, difficulty in rows:
        totals[int(index)] += float(difficulty)
    scale = hashes_per_difficulty(algorithm) / bucket_seconds
    return [(start + timedelta(seconds=i * bucket_seconds), total * scale)
            for i, total in enumerate(totals)]


@functools.cache
def _history_query(*, per_address: bool) -> Select[Any]:
    """hashrate_history's statement, built once (see the note above WorkerStats)."""
    if per_address:
        table: Table = stats_minute
        where = [table.c.address == bindparam("address"),
                 table.c.minute >= bindparam("start"), table.c.minute < bindparam("end")]
    else:  # the pool's own per-minute sums: one row a minute
        table = stats_pool_minute
        where = [table.c.minute >= bindparam("start"), table.c.minute < bindparam("end")]
    bucket = _bucket(table.c.minute).label("bucket")
    return (select(bucket, func.sum(table.c.accepted_difficulty)).where(*where)
            .group_by(bucket))


async def workers(source: Source, address: str, window_seconds: float, *, algorithm: str,
                  now: datetime | None = None) -> list[WorkerStats]:
    """Given a miner's address, return its workers that sent shares in the window (whole
    minutes ending where ``now``'s minute starts; the last share may be newer, up to
    ``now``), sorted by name."""
    start, end = _window(window_seconds, now)
    scale = hashes_per_difficulty(algorithm) / window_seconds
    async with _connection(source) as connection:
        fold = _fold(connection)
        rolled = (await connection.execute(
            select(stats_minute.c.worker, func.sum(stats_minute.c.accepted_difficulty),
                   func.sum(stats_minute.c.accepted), func.sum(stats_minute.c.rejected))
            .where(stats_minute.c.address == address, stats_minute.c.minute >= start,
                   stats_minute.c.minute < end)
            .group_by(stats_minute.c.worker))).all()
        latest = (await connection.execute(
            select(shares.c.worker, func.max(shares.c.time))
            .where(shares.c.address == address, shares.c.time >= start,
                   shares.c.time <= (now or datetime.now(UTC)))
            .group_by(shares.c.worker))).all()
    last_share = {fold(worker): as_utc(time) for worker, time in latest}
    found = {fold(worker): WorkerStats(worker, float(difficulty) * scale, int(accepted),
                                       int(rejected), last_share.get(fold(worker)))
             for worker, difficulty, accepted, rejected in rolled}
    for worker, _ in latest:
        if fold(worker) not in found:
            found[fold(worker)] = WorkerStats(worker, 0.0, 0, 0, last_share[fold(worker)])
    return sorted(found.values(), key=lambda stats: stats.worker)


async def share_counts(source: Source, since: datetime) -> ShareCounts:
    """Given a time, return the valid and invalid shares of the minutes starting at or
    after it."""
    async with _connection(source) as connection:
        valid = (await connection.execute(
            select(func.coalesce(func.sum(stats_minute.c.accepted), 0))
            .where(stats_minute.c.minute >= since))).scalar_one()
        invalid = (await connection.execute(
            select(stats_rejects.c.reject_code, func.sum(stats_rejects.c.count))
            .where(stats_rejects.c.minute >= since)
            .group_by(stats_rejects.c.reject_code))).all()
    return ShareCounts(int(valid), {code: int(count) for code, count in invalid})


async def round_effort(source: Source, algorithm: str, *,
                       network_difficulty: float | None = None) -> float | None:
    """Return the current round's effort (1.0 = the work a block takes on average): the
    accepted difficulty of the shares after the newest block's last share, divided by
    the network difficulty in share units. None before the first block.

    The daemon reports network difficulty in sha256d difficulty-1 units; in the
    algorithm's share units it is ``network_difficulty * diff1_target /
    SHA256D_DIFF1_TARGET`` (x 65536 for scrypt). ``network_difficulty`` overrides the
    newest block's, e.g. with the daemon's current one; given, it also gives an effort
    before the first block.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    async with _connection(source) as connection:
        newest = (await connection.execute(
            select(blocks.c.last_share_id, blocks.c.network_difficulty)
            .where(blocks.c.status != CANDIDATE)
            .order_by(blocks.c.id.desc()).limit(1))).first()
        after, difficulty = 0, network_difficulty
        if newest is not None:
            after = newest.last_share_id or 0
            if difficulty is None:
                difficulty = float(newest.network_difficulty)
        if difficulty is None:
            return None
        work = (await connection.execute(
            select(func.coalesce(func.sum(shares.c.difficulty), 0.0))
            .where(shares.c.id > after, shares.c.accepted))).scalar_one()
    expected = difficulty * ALGORITHMS[algorithm].diff1_target / SHA256D_DIFF1_TARGET
    return float(work) / expected


def active_miners(connection: Connection, window_seconds: float, *,
                  now: datetime | None = None) -> ActiveMiners:
    """Return how many addresses, and address + worker pairs, sent shares (valid or not)
    in the window of whole minutes ending where ``now``'s minute starts."""
    start, end = _window(window_seconds, now)
    pairs = (select(stats_minute.c.address, stats_minute.c.worker).distinct()
             .where(stats_minute.c.minute >= start, stats_minute.c.minute < end)
             .subquery())
    miners, pair_count = connection.execute(
        select(func.count(pairs.c.address.distinct()), func.count())).one()
    return ActiveMiners(int(miners), int(pair_count))


@dataclass(frozen=True, slots=True)
class PoolActivity:
    """What an operator's status and the web page show of a pool, read in one snapshot:
    hashrate and miners over a window, the newest block and the newest payment batch."""

    hashrate: float
    miners: int
    workers: int
    last_block_height: int | None
    last_block_time: datetime | None
    last_block_status: str | None
    last_payment_time: datetime | None
    last_payment_status: str | None


async def pool_activity(source: Source, *, algorithm: str, window_seconds: float,
                        now: datetime | None = None) -> PoolActivity:
    """Given a window of whole minutes, return the pool's :class:`PoolActivity`."""
    async with _connection(source) as connection:
        rate = await hashrate(connection, algorithm=algorithm,
                              window_seconds=window_seconds, now=now)
        active = await connection.run_sync(active_miners, window_seconds, now=now)
        block = (await connection.execute(
            select(blocks.c.height, blocks.c.time, blocks.c.status)
            .where(blocks.c.status != CANDIDATE)
            .order_by(blocks.c.id.desc()).limit(1))).first()
        payment = (await connection.execute(
            select(payment_batches.c.created, payment_batches.c.status)
            .order_by(payment_batches.c.created.desc()).limit(1))).first()
    return PoolActivity(
        hashrate=rate, miners=active.miners, workers=active.workers,
        last_block_height=None if block is None else block.height,
        last_block_time=None if block is None else block.time,
        last_block_status=None if block is None else block.status,
        last_payment_time=None if payment is None else payment.created,
        last_payment_status=None if payment is None else payment.status)


# -- figures of the web pages ---------------------------------------------------------------

# Stratum reject codes (stratum/protocol.py) as the pages name them.
REJECT_REASONS = {
    OTHER: "other",
    JOB_NOT_FOUND: "stale",
    DUPLICATE: "duplicate",
    LOW_DIFFICULTY: "low difficulty",
    UNAUTHORIZED: "unauthorized",
    NOT_SUBSCRIBED: "not subscribed",
}


def reject_reason(code: int | None) -> str:
    """Given a share's reject code, return the reason in words.

    >>> reject_reason(21), reject_reason(None), reject_reason(99)
    ('stale', 'other', 'code 99')
    """
    if code is None:
        return REJECT_REASONS[OTHER]
    return REJECT_REASONS.get(code, f"code {code}")


def _by_reason(rows: Any) -> dict[str, int]:
    found: Counter[str] = Counter()
    for code, count in rows:
        found[reject_reason(code)] += int(count)
    return dict(sorted(found.items()))


def _rolled_rows(start: datetime, tail: datetime, end: datetime, *, per_address: bool
                 ) -> tuple[Subquery, dict[str, datetime], tuple[datetime, datetime] | None]:
    """The rolled-up rows of [start, end), every miner's or one ``:address``'s, as a
    subquery (time, address, worker, difficulty, accepted, rejected) and the values of
    its parameters: the whole hours between ``start`` and ``tail`` from stats_hour (one
    row per hour, miner and worker, time = the hour), the minutes around them from
    stats_minute. A window starting at or after ``tail`` thus sees only minutes. Also
    return the hours [first, last) read from stats_hour, None if none (under two hours
    between ``start`` and ``tail``, where minutes are as cheap)."""
    first, last = hour_of(start), hour_of(tail)
    if first < start:
        first += timedelta(hours=1)
    if last - first < timedelta(hours=2):
        return (_rolled_subquery(hours=False, per_address=per_address),
                {"start": start, "end": end}, None)
    return (_rolled_subquery(hours=True, per_address=per_address),
            {"start": start, "first": first, "last": last, "end": end}, (first, last))


@functools.cache
def _rolled_subquery(*, hours: bool, per_address: bool) -> Subquery:
    """_rolled_rows's subquery, built once (see the note above WorkerStats): minutes [:start,
    :end), or hours [:first, :last) and the minutes [:start, :first) and [:last, :end)."""

    def rows(table: Table, time: Any, low: str, high: str) -> Select[Any]:
        query = (select(time.label("time"), table.c.address, table.c.worker,
                        table.c.accepted_difficulty.label("difficulty"),
                        table.c.accepted, table.c.rejected)
                 .where(time >= bindparam(low), time < bindparam(high)))
        return query.where(table.c.address == bindparam("address")) if per_address \
            else query

    def minutes(low: str, high: str) -> Select[Any]:
        return rows(stats_minute, stats_minute.c.minute, low, high)

    if not hours:
        return minutes("start", "end").subquery()
    return union_all(rows(stats_hour, stats_hour.c.hour, "first", "last"),
                     minutes("start", "first"), minutes("last", "end")).subquery()


@dataclass(frozen=True, slots=True)
class WindowTotals:
    """Accepted difficulty per window (whole minutes ending where the current minute
    starts), and the accepted and rejected shares of the longest one."""

    difficulty: dict[int, float]  # window seconds -> sum of accepted difficulty
    accepted: int
    rejected: int


def window_totals(connection: Connection, windows: tuple[int, ...], *,
                  now: datetime | None = None) -> WindowTotals:
    """Given windows of whole minutes, return the pool's accepted difficulty over each,
    read in one pass over the longest from its own per-minute sums (a day is 1,440
    rows, not every miner's). A miner's are its workers' summed (:func:`worker_totals`)."""
    bounds = {window: _window(window, now) for window in windows}
    start, end = min(bounds.values())
    table = stats_pool_minute
    columns = [func.coalesce(func.sum(case((table.c.minute >= bounds[w][0],
                                            table.c.accepted_difficulty), else_=0.0)), 0.0)
               for w in windows]
    row = connection.execute(
        select(*columns, func.coalesce(func.sum(table.c.accepted), 0),
               func.coalesce(func.sum(table.c.rejected), 0))
        .where(table.c.minute >= start, table.c.minute < end)).one()
    return WindowTotals({w: float(row[i]) for i, w in enumerate(windows)},
                        int(row[-2]), int(row[-1]))


def pool_rejects(connection: Connection, window_seconds: int, *,
                 now: datetime | None = None) -> dict[str, int]:
    """The pool's rejected shares by reason over a window of whole minutes."""
    start, end = _window(window_seconds, now)
    return _by_reason(connection.execute(
        select(stats_rejects.c.reject_code, func.sum(stats_rejects.c.count))
        .where(stats_rejects.c.minute >= start, stats_rejects.c.minute < end)
        .group_by(stats_rejects.c.reject_code)).all())


def miner_rejects(connection: Connection, address: str, window_seconds: int, *,
                  now: datetime | None = None) -> dict[str, int]:
    """One miner's rejected shares by reason over a window of whole minutes, from
    stats_miner_rejects (its index on address and minute)."""
    start, end = _window(window_seconds, now)
    return _by_reason(connection.execute(
        _MINER_REJECTS, {"address": address, "start": start, "end": end}).all())


def _per_minute_of_miner(table: Table, key: Any, total: Any) -> Select[Any]:
    """``key`` and ``total`` (an aggregate) of one miner's rows of a per-minute table,
    grouped by ``key``: address :address, minutes [:start, :end)."""
    return (select(key, total)
            .where(table.c.address == bindparam("address"),
                   table.c.minute >= bindparam("start"), table.c.minute < bindparam("end"))
            .group_by(key))


_MINER_REJECTS = _per_minute_of_miner(stats_miner_rejects,
                                      stats_miner_rejects.c.reject_code,
                                      func.sum(stats_miner_rejects.c.count))


@dataclass(frozen=True, slots=True)
class MinerTotals:
    """One miner over a window."""

    address: str
    difficulty: float  # accepted difficulty
    workers: int
    accepted: int
    rejected: int


def miner_ranking(connection: Connection, window_seconds: int, *,
                  now: datetime | None = None) -> list[MinerTotals]:
    """Given a window of whole minutes, return every miner that sent shares in it, most
    accepted difficulty first (ties by address): read once, any page is a slice.

    The hours wholly inside the window come from stats_hour, only the minutes at its
    two ends from stats_minute (_rolled_rows): over a day that is 23 hours of rows per
    worker and 60 minutes, instead of 1,440 minutes."""
    start, end = _window(window_seconds, now)
    parts, values, _ = _rolled_rows(start, end, end, per_address=False)
    query = (select(parts.c.address, func.sum(parts.c.difficulty),
                    func.count(parts.c.worker.distinct()), func.sum(parts.c.accepted),
                    func.sum(parts.c.rejected))
             .group_by(parts.c.address))
    found = [MinerTotals(address, float(d), int(w), int(a), int(r))
             for address, d, w, a, r in connection.execute(query, values)]
    found.sort(key=lambda miner: (-miner.difficulty, miner.address))
    return found


@dataclass(frozen=True, slots=True)
class WorkerTotals:
    """One worker of a miner: accepted difficulty over each window, shares over the
    longest, and its newest share."""

    worker: str
    difficulty: dict[int, float]  # window seconds -> accepted difficulty
    accepted: int
    rejected: int
    # Exact when recent, else the start of its minute (see worker_totals).
    last_share: datetime | None


# How far back a worker's newest share is read exactly from the shares table at least
# (see worker_totals); older ones come from the per-minute roll-up. The engine rolls up
# once a minute: 5 minutes leave room for a late or slow roll.
EXACT_LAST_SHARE = 300


def worker_totals(connection: Connection, address: str, *, windows: tuple[int, ...],
                  exact_seconds: int = EXACT_LAST_SHARE,
                  now: datetime | None = None) -> list[WorkerTotals]:
    """Given a miner's address and windows of whole minutes, return its workers that
    sent a share in the longest window (or in the current minute up to ``now``), with
    their accepted difficulty over each window and their shares over the longest,
    sorted by name. Summed over the workers, these are the miner's own figures.

    A worker's newest share is exact (from the shares table) when it is at most
    ``exact_seconds`` before ``now``; an older one is the start of its minute, from
    stats_minute. Such a worker is offline, or nearly, so minute precision is enough,
    and it spares reading a day of a big miner's shares (tens of thousands of rows) for
    each page: the shares table is read over ``exact_seconds`` only, by its index on
    address and time. A caller that calls a worker online when its newest share is at
    most N seconds old passes ``exact_seconds >= N``: the answer is then the same as
    with exact times, since the minute's start is never later than the share. Counts
    come from the whole hours before the second longest window (stats_hour) and
    minutes elsewhere (see _rolled_rows). Shares older than ``exact_seconds`` that are
    not rolled up yet are not seen: keep it above the roll-up's delay
    (EXACT_LAST_SHARE)."""
    bounds = {window: _window(window, now) for window in windows}
    start, end = min(bounds.values())
    tail = min((b[0] for b in bounds.values() if b[0] > start), default=end)
    until = now or datetime.now(UTC)
    _, values, hours = _rolled_rows(start, tail, end, per_address=True)
    fold = _fold(connection)
    rolled = connection.execute(
        _worker_totals_query(len(windows), hours=hours is not None),
        {**values, "address": address,
         **{f"window{i}": bounds[w][0] for i, w in enumerate(windows)}}).all()
    # Workers whose newest row is an hour (none of their shares since): their newest
    # minute, from the oldest such hour on.
    newest_minute: dict[str, datetime] = {}
    if hours is not None:
        first, last = hours
        oldest = min((as_utc(row[-1]) for row in rolled
                      if first <= as_utc(row[-1]) < last), default=None)
        if oldest is not None:
            newest_minute = {fold(worker): as_utc(minute) for worker, minute in (
                connection.execute(_NEWEST_MINUTES, {"address": address, "start": oldest,
                                                     "end": last}))}
    latest = connection.execute(_LATEST_SHARES, {
        "address": address, "start": max(start, until - timedelta(seconds=exact_seconds)),
        "end": until}).all()
    last_share = {fold(worker): as_utc(time) for worker, time in latest}
    found: dict[str, WorkerTotals] = {}
    for worker, *sums, accepted, rejected, newest in rolled:
        found[fold(worker)] = WorkerTotals(
            worker, {w: float(d or 0.0) for w, d in zip(windows, sums, strict=True)},
            int(accepted), int(rejected),
            last_share.get(fold(worker), newest_minute.get(fold(worker), as_utc(newest))))
    for worker, time in latest:
        if fold(worker) not in found:
            found[fold(worker)] = WorkerTotals(worker, dict.fromkeys(windows, 0.0), 0, 0,
                                               as_utc(time))
    return sorted(found.values(), key=lambda totals: totals.worker)


@functools.cache
def _worker_totals_query(windows: int, *, hours: bool) -> Select[Any]:
    """worker_totals's statement over ``windows`` windows starting at :window0, ...,
    built once (see the note above WorkerStats)."""
    parts = _rolled_subquery(hours=hours, per_address=True)
    return (select(parts.c.worker,
                   *(func.sum(case((parts.c.time >= bindparam(f"window{i}"),
                                    parts.c.difficulty), else_=0.0))
                     for i in range(windows)),
                   func.sum(parts.c.accepted), func.sum(parts.c.rejected),
                   func.max(parts.c.time))
            .group_by(parts.c.worker))


_NEWEST_MINUTES = _per_minute_of_miner(stats_minute, stats_minute.c.worker,
                                       func.max(stats_minute.c.minute))
# A worker's newest share in [:start, :end] (end included: a share at ``now``).
_LATEST_SHARES = (
    select(shares.c.worker, func.max(shares.c.time))
    .where(shares.c.address == bindparam("address"), shares.c.time >= bindparam("start"),
           shares.c.time <= bindparam("end"))
    .group_by(shares.c.worker))


def network_difficulty_in_shares(network_difficulty: float, algorithm: str) -> float:
    """The daemon's network difficulty (sha256d difficulty-1 units) in the algorithm's
    share units: the accepted difficulty a block takes on average (x 65536 for scrypt)."""
    return network_difficulty * ALGORITHMS[algorithm].diff1_target / SHA256D_DIFF1_TARGET


@dataclass(slots=True)
class RoundTally:
    """The current round's accepted difficulty per address, kept up to date by adding
    only the shares written since the last look (:func:`update_round`).

    The round starts after the newest block's last share (as :func:`round_effort`);
    ``seen`` is the highest share id added. A new block starts a new tally."""

    block_id: int | None = None
    after: int = 0
    seen: int = 0
    network_difficulty: float | None = None
    by_address: dict[str, float] | None = None
    # MariaDB compares addresses ignoring case (see _fold): keys are then lowercase.
    casefold: bool = False

    @property
    def total(self) -> float:
        return sum((self.by_address or {}).values())

    def of(self, address: str) -> float:
        """The accepted difficulty of one address in the round."""
        return (self.by_address or {}).get(address.lower() if self.casefold else address,
                                           0.0)


def update_round(connection: Connection, tally: RoundTally) -> RoundTally:
    """Given the tally of an earlier look (or a new one), return it brought up to date
    (left unchanged itself): its sums plus the shares written since, or a fresh tally
    when a block was found meanwhile. Relies on share ids becoming visible in id order
    (writer.py), as the roll-up does."""
    fold = _fold(connection)
    newest = connection.execute(
        select(blocks.c.id, blocks.c.last_share_id, blocks.c.network_difficulty)
        .where(blocks.c.status != CANDIDATE)
        .order_by(blocks.c.id.desc()).limit(1)).first()
    block_id = None if newest is None else newest.id
    if tally.by_address is None or tally.block_id != block_id:
        after = 0 if newest is None else newest.last_share_id or 0
        tally = RoundTally(block_id=block_id, after=after, seen=after,
                           network_difficulty=None if newest is None
                           else float(newest.network_difficulty),
                           by_address={}, casefold=fold is str.lower)
    top = connection.execute(select(func.max(shares.c.id))).scalar()
    assert tally.by_address is not None
    if top is not None and top > tally.seen:
        rows = connection.execute(
            select(shares.c.address, func.sum(shares.c.difficulty))
            .where(shares.c.id > tally.seen, shares.c.id <= top,
                   shares.c.accepted == true())
            .group_by(shares.c.address)).all()
        # A new tally, not the old one changed: pages may be reading the old one on
        # another thread meanwhile.
        by_address = dict(tally.by_address)
        for address, difficulty in rows:
            key = fold(address)
            by_address[key] = by_address.get(key, 0.0) + float(difficulty)
        tally = dataclasses.replace(tally, seen=top, by_address=by_address)
    return tally
