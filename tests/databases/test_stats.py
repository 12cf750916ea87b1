"""Per-minute share statistics on SQLite, PostgreSQL and MariaDB (real servers): the
roll-up checked against a plain-Python tally of the inserted shares, the queries against
figures computed by hand."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting import stats
from multipool.accounting.schema import (
    CANDIDATE,
    blocks,
    settings,
    shares,
    stats_miner_rejects,
    stats_minute,
    stats_pool_minute,
    stats_rejects,
)
from multipool.accounting.stats import (
    ActiveMiners,
    StatsRoller,
    active_miners,
    hashrate,
    hashrate_history,
    miner_rejects,
    pool_activity,
    prune_stats,
    round_effort,
    share_counts,
    worker_totals,
    workers,
)
from multipool.supervision import Periodic, Supervisor

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Hashes per unit of share difficulty, by hand: 2**256 / diff1_target with the sha256d
# difficulty-1 target 0xffff * 2**208, and the scrypt one 2**16 times larger.
SHA256D_HASHES = 2**48 / 0xFFFF
SCRYPT_HASHES = 2**32 / 0xFFFF
# Difficulties exact in MariaDB's single-precision FLOAT, so sums compare with ==.
DIFFICULTIES = [0.5, 1.0, 2.0, 4.0, 1024.0]


def share(time: datetime, address: str = "addrA", worker: str = "rig1",
          difficulty: float = 1.0, accepted: bool = True,
          reject_code: int | None = None) -> dict[str, Any]:
    return {"time": time, "height": 100, "address": address, "worker": worker,
            "ip": "127.0.0.1", "difficulty": difficulty, "share_difficulty": difficulty * 3,
            "accepted": accepted, "reject_code": reject_code}


def random_shares(seed: int, count: int, start: datetime, minutes: int) -> list[dict]:
    """Shares at whole seconds (MariaDB's DATETIME keeps no fraction) in random order,
    over ``minutes`` minutes from ``start``; rejected ones carry a difficulty too, which
    must not count."""
    rng = random.Random(seed)
    return [share(start + timedelta(seconds=rng.randrange(minutes * 60)),
                  rng.choice(["addrA", "addrB", "addrC"]), rng.choice(["", "rig1", "rig2"]),
                  rng.choice(DIFFICULTIES), accepted := rng.random() < 0.75,
                  None if accepted else rng.choice([21, 22, 23, None]))
            for _ in range(count)]


def tally(rows: list[dict]) -> tuple[dict, Counter, Counter]:
    """What the stats tables must hold for these shares, computed independently:
    stats_minute, stats_rejects and stats_miner_rejects."""
    minutes: dict[tuple, list] = {}
    rejects: Counter = Counter()
    miner_rejects: Counter = Counter()
    for row in rows:
        minute = row["time"].replace(second=0, microsecond=0)
        counts = minutes.setdefault((minute, row["address"], row["worker"]), [0, 0.0, 0])
        if row["accepted"]:
            counts[0] += 1
            counts[1] += row["difficulty"]
        else:
            counts[2] += 1
            code = row["reject_code"] if row["reject_code"] is not None else 20
            rejects[minute, code] += 1
            miner_rejects[minute, row["address"], code] += 1
    return minutes, rejects, miner_rejects


def utc(time: datetime) -> datetime:
    return time.replace(tzinfo=UTC) if time.tzinfo is None else time.astimezone(UTC)


async def stored(engine: AsyncEngine) -> tuple[dict, Counter, Counter]:
    async with engine.connect() as connection:
        minute_rows = (await connection.execute(select(stats_minute))).all()
        reject_rows = (await connection.execute(select(stats_rejects))).all()
        miner_rows = (await connection.execute(select(stats_miner_rejects))).all()
    return ({(utc(r.minute), r.address, r.worker): [r.accepted, r.accepted_difficulty,
                                                    r.rejected] for r in minute_rows},
            Counter({(utc(r.minute), r.reject_code): r.count for r in reject_rows}),
            Counter({(utc(r.minute), r.address, r.reject_code): r.count
                     for r in miner_rows}))


async def progress(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return (await connection.execute(select(settings.c.value).where(
            settings.c.name == "stats_last_share_id"))).scalar()


async def insert_shares(engine: AsyncEngine, rows: list[dict]) -> int:
    """Insert shares in order; return the id of the last one."""
    async with engine.begin() as connection:
        await connection.execute(insert(shares), rows)
        return (await connection.execute(select(func.max(shares.c.id)))).scalar_one()


async def test_roll_matches_a_plain_tally_and_a_second_roll_adds_nothing(
        engine: AsyncEngine):
    rows = random_shares(1, 400, T0, 6)
    last_id = await insert_shares(engine, rows)
    roller = StatsRoller(engine)
    assert await roller.roll() == 400
    expected = tally(rows)
    assert len(expected[0]) > 20 and len(expected[1]) > 10  # the data is not trivial
    assert await stored(engine) == expected
    assert await progress(engine) == str(last_id)
    assert await roller.roll() == 0
    assert await stored(engine) == expected
    assert await progress(engine) == str(last_id)


async def test_roll_in_small_chunks_matches_the_tally(engine: AsyncEngine):
    rows = random_shares(2, 150, T0, 4)
    await insert_shares(engine, rows)
    assert await StatsRoller(engine, chunk_size=7).roll() == 150
    assert await stored(engine) == tally(rows)


async def test_shares_landing_in_rolled_minutes_add_up_exactly(engine: AsyncEngine):
    first = random_shares(3, 200, T0, 3)
    await insert_shares(engine, first)
    roller = StatsRoller(engine, chunk_size=64)
    assert await roller.roll() == 200
    # More shares for minutes rolled already (minute 2) and for new ones (3 and 4).
    second = random_shares(4, 150, T0 + timedelta(minutes=2), 3)
    last_id = await insert_shares(engine, second)
    overlap = set(tally(first)[0]) & set(tally(second)[0])
    assert overlap and set(tally(first)[1]) & set(tally(second)[1])
    assert await roller.roll() == 150
    assert await stored(engine) == tally(first + second)
    assert await progress(engine) == str(last_id)


async def test_failed_roll_leaves_progress_and_stats_unchanged(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch):
    first = random_shares(5, 100, T0, 2)
    first_id = await insert_shares(engine, first)
    roller = StatsRoller(engine)
    await roller.roll()
    second = random_shares(6, 100, T0 + timedelta(minutes=1), 2)
    await insert_shares(engine, second)

    async def fail(*_args: Any) -> None:
        raise RuntimeError("crash between the minute and reject adds")

    # Progress and stats_minute are written before the rejects: all must roll back.
    monkeypatch.setattr(stats, "_add_rejects", fail)
    with pytest.raises(RuntimeError, match="crash between"):
        await roller.roll()
    assert await stored(engine) == tally(first)
    assert await progress(engine) == str(first_id)
    monkeypatch.undo()
    assert await roller.roll() == 100
    assert await stored(engine) == tally(first + second)


async def test_worker_names_differing_in_case(engine: AsyncEngine):
    # MariaDB's default collation ignores case: one row there, two elsewhere; the roll
    # must neither fail on the primary key nor lose a share.
    rows = [share(T0, worker="Rig"), share(T0 + timedelta(seconds=5), worker="rig"),
            share(T0 + timedelta(seconds=9), worker="RIG", accepted=False,
                  reject_code=23)]
    roller = StatsRoller(engine)
    await insert_shares(engine, rows[:1])
    await roller.roll()
    await insert_shares(engine, rows[1:])
    assert await roller.roll() == 2
    minutes, rejects, miner_rejects = await stored(engine)
    case_insensitive = engine.dialect.name == "mysql"
    assert len(minutes) == (1 if case_insensitive else 3)
    assert sum(counts[0] for counts in minutes.values()) == 2
    assert sum(counts[2] for counts in minutes.values()) == 1
    assert rejects == Counter({(T0, 23): 1})
    assert miner_rejects == Counter({(T0, "addrA", 23): 1})


def window_shares() -> list[dict]:
    """Shares around a 10-minute window ending at 12:10 (now = 12:10:30)."""
    return [
        share(T0 - timedelta(seconds=1), difficulty=1000.0),  # before the window
        share(T0, "addrA", "rig1", 8.0),
        share(T0 + timedelta(minutes=3), "addrA", "rig1", 1000.0, False, 22),
        share(T0 + timedelta(minutes=5, seconds=30), "addrA", "rig2", 16.0),
        share(T0 + timedelta(minutes=9, seconds=59), "addrB", "", 8.0),
        share(T0 + timedelta(minutes=10, seconds=10), "addrA", "rig3", 1000.0),  # current
    ]


async def test_hashrate_by_hand(engine: AsyncEngine):
    await insert_shares(engine, window_shares())
    await StatsRoller(engine).roll()
    now = T0 + timedelta(minutes=10, seconds=30)
    pool = await hashrate(engine, algorithm="sha256d", window_seconds=600, now=now)
    assert pool == pytest.approx(32 * SHA256D_HASHES / 600, rel=1e-12)
    assert pool == pytest.approx(229_068_417.76, rel=1e-9)  # 32 * 2**48 / 65535 / 600
    scrypt = await hashrate(engine, algorithm="scrypt", window_seconds=600, now=now)
    assert scrypt == pytest.approx(32 * SCRYPT_HASHES / 600, rel=1e-12)
    miner = await hashrate(engine, algorithm="sha256d", window_seconds=600, now=now,
                           address="addrA")
    assert miner == pytest.approx(24 * SHA256D_HASHES / 600, rel=1e-12)
    rig2 = await hashrate(engine, algorithm="sha256d", window_seconds=600, now=now,
                          address="addrA", worker="rig2")
    assert rig2 == pytest.approx(16 * SHA256D_HASHES / 600, rel=1e-12)
    last_minute = await hashrate(engine, algorithm="sha256d", window_seconds=60, now=now)
    assert last_minute == pytest.approx(8 * SHA256D_HASHES / 60, rel=1e-12)
    with pytest.raises(ValueError, match="whole minutes"):
        await hashrate(engine, algorithm="sha256d", window_seconds=90, now=now)


async def test_workers_and_active_miners(engine: AsyncEngine):
    await insert_shares(engine, window_shares())
    await StatsRoller(engine).roll()
    now = T0 + timedelta(minutes=10, seconds=30)
    found = await workers(engine, "addrA", 600, algorithm="sha256d", now=now)
    assert [(w.worker, w.accepted, w.rejected) for w in found] == [
        ("rig1", 1, 1), ("rig2", 1, 0), ("rig3", 0, 0)]
    assert found[0].hashrate == pytest.approx(8 * SHA256D_HASHES / 600, rel=1e-12)
    assert found[1].hashrate == pytest.approx(16 * SHA256D_HASHES / 600, rel=1e-12)
    # rig3's only share is in the current minute: no hashrate yet, but it is seen.
    assert found[2].hashrate == 0.0
    assert [w.last_share for w in found] == [
        T0 + timedelta(minutes=3), T0 + timedelta(minutes=5, seconds=30),
        T0 + timedelta(minutes=10, seconds=10)]
    assert await stats.read(engine, active_miners, 600, now=now) == ActiveMiners(2, 3)
    assert await stats.read(engine, active_miners, 60, now=now) == ActiveMiners(1, 1)


async def test_worker_totals_newest_share_exact_only_recently(engine: AsyncEngine):
    """A worker's newest share is exact within ``exact_seconds`` of now, else the start
    of its minute (from stats_minute); a share of the current minute is seen too."""
    await insert_shares(engine, [
        share(T0 + timedelta(minutes=1, seconds=5), worker="rig1"),
        share(T0 + timedelta(minutes=3, seconds=45), worker="rig1", accepted=False,
              reject_code=21),
        share(T0 + timedelta(minutes=5, seconds=30), worker="rig2"),
        share(T0 + timedelta(minutes=10, seconds=10), worker="rig3"),  # current minute
        share(T0 + timedelta(minutes=10, seconds=40), worker="rig3")])  # after now
    await StatsRoller(engine).roll()
    now = T0 + timedelta(minutes=10, seconds=30)

    async def newest(exact_seconds: int) -> dict[str, datetime | None]:
        found = await stats.read(engine, worker_totals, "addrA", windows=(600, 3600),
                                 exact_seconds=exact_seconds, now=now)
        return {w.worker: w.last_share for w in found}

    # 300 s before now is 12:05:30: rig2's share is exactly on the edge.
    assert await newest(300) == {"rig1": T0 + timedelta(minutes=3),
                                 "rig2": T0 + timedelta(minutes=5, seconds=30),
                                 "rig3": T0 + timedelta(minutes=10, seconds=10)}
    assert await newest(299) == {"rig1": T0 + timedelta(minutes=3),
                                 "rig2": T0 + timedelta(minutes=5),
                                 "rig3": T0 + timedelta(minutes=10, seconds=10)}
    assert (await newest(600))["rig1"] == T0 + timedelta(minutes=3, seconds=45)


async def test_miner_rejects_over_whole_minutes(engine: AsyncEngine):
    """A miner's rejects by reason over the whole minutes ending where now's minute
    starts, counted here from the shares."""
    rows = random_shares(9, 400, T0, 6)
    await insert_shares(engine, rows)
    await StatsRoller(engine, chunk_size=50).roll()
    now = T0 + timedelta(minutes=5, seconds=1)
    words = {21: "stale", 22: "duplicate", 23: "low difficulty", None: "other"}
    for address in ("addrA", "addrB"):
        inside = [r for r in rows if r["address"] == address and not r["accepted"]
                  and T0 + timedelta(minutes=2) <= r["time"] < T0 + timedelta(minutes=5)]
        expected = dict(Counter(words[r["reject_code"]] for r in inside))
        assert len(expected) >= 3
        assert await stats.read(engine, miner_rejects, address, 180, now=now) == expected
    assert await stats.read(engine, miner_rejects, "addrZ", 180, now=now) == {}
    with pytest.raises(ValueError, match="whole minutes"):
        await stats.read(engine, miner_rejects, "addrA", 90, now=now)


async def test_miner_rejects_addresses_differing_in_case(engine: AsyncEngine):
    # MariaDB's default collation ignores case: one miner there, two elsewhere.
    roller = StatsRoller(engine)
    await insert_shares(engine, [share(T0, address="addrA", accepted=False,
                                       reject_code=23)])
    await roller.roll()
    await insert_shares(engine, [share(T0 + timedelta(seconds=3), address="ADDRA",
                                       accepted=False, reject_code=23)])
    assert await roller.roll() == 1
    now = T0 + timedelta(minutes=1)
    together = engine.dialect.name == "mysql"
    assert await stats.read(engine, miner_rejects, "addrA", 60, now=now) == {
        "low difficulty": 2 if together else 1}
    assert (await stored(engine))[2] == (
        Counter({(T0, "addrA", 23): 2}) if together
        else Counter({(T0, "addrA", 23): 1, (T0, "ADDRA", 23): 1}))


async def test_share_counts_and_history(engine: AsyncEngine):
    rows = random_shares(7, 300, T0, 5)
    await insert_shares(engine, rows)
    await StatsRoller(engine).roll()
    since = T0 + timedelta(minutes=2)
    recent = [row for row in rows if row["time"] >= since]
    counts = await share_counts(engine, since)
    assert counts.valid == sum(row["accepted"] for row in recent)
    assert counts.invalid == dict(Counter(row["reject_code"] or 20 for row in recent
                                          if not row["accepted"]))
    assert counts.invalid_total == len(recent) - counts.valid > 0

    now = T0 + timedelta(minutes=5, seconds=1)
    history = await stats.read(engine, hashrate_history, algorithm="sha256d", since=T0,
                               now=now, bucket_seconds=120)
    # 5 minutes in 2-minute buckets ending at 12:05: 11:59-12:01, 12:01-12:03, 12:03-12:05.
    assert [start for start, _ in history] == [T0 - timedelta(minutes=1),
                                               T0 + timedelta(minutes=1),
                                               T0 + timedelta(minutes=3)]
    for start, rate in history:
        work = sum(row["difficulty"] for row in rows if row["accepted"]
                   and start <= row["time"] < start + timedelta(minutes=2))
        assert rate == pytest.approx(work * SHA256D_HASHES / 120, rel=1e-12)
    assert history[1][1] > 0


async def test_round_effort_by_hand(engine: AsyncEngine):
    assert await round_effort(engine, "scrypt") is None
    finder = await insert_shares(engine, [share(T0, difficulty=4096.0)] * 3)
    async with engine.begin() as connection:
        await connection.execute(insert(blocks), {
            "height": 101, "hash": "ab" * 32, "time": T0, "address": "addrA",
            "worker": "rig1", "reward": 5_000_000_000, "network_difficulty": 0.5,
            "last_share_id": finder, "status": "pending", "confirmations": 0})
    assert await round_effort(engine, "scrypt") == 0.0
    last = await insert_shares(engine, [
        share(T0, difficulty=8192.0), share(T0, difficulty=8192.0),
        share(T0, difficulty=99999.0, accepted=False, reject_code=23)])
    # scrypt: 0.5 x 65536 = 32768 in share units; 16384 of it done.
    assert await round_effort(engine, "scrypt") == 0.5
    # sha256d shares: network difficulty 0.5 in share units already.
    assert await round_effort(engine, "sha256d") == 16384 / 0.5
    # The daemon's current difficulty instead of the block's: 16384 / (4 x 65536).
    assert await round_effort(engine, "scrypt", network_difficulty=4.0) == 0.0625
    async with engine.begin() as connection:
        await connection.execute(insert(blocks), {
            "height": 102, "hash": "cd" * 32, "time": T0, "address": "addrB",
            "worker": "", "reward": 5_000_000_000, "network_difficulty": 2.0,
            "last_share_id": last, "status": "pending", "confirmations": 0})
    assert await round_effort(engine, "scrypt") == 0.0


async def test_a_block_candidate_is_neither_the_last_block_nor_ends_the_round(
        engine: AsyncEngine):
    """A candidate row (written before submitblock; the daemon may refuse it, or its
    engine may die before submitting it) is not a block yet: effort and the pool's
    newest block are those of the pending block before it."""
    finder = await insert_shares(engine, [share(T0, difficulty=4096.0)])
    later = await insert_shares(engine, [share(T0, difficulty=8192.0)])
    async with engine.begin() as connection:
        await connection.execute(insert(blocks), [
            {"height": 101, "hash": "ab" * 32, "time": T0, "address": "addrA",
             "worker": "rig1", "reward": 5_000_000_000, "network_difficulty": 0.5,
             "last_share_id": finder, "status": "pending", "confirmations": 0},
            {"height": 102, "hash": "cd" * 32, "time": T0 + timedelta(seconds=1),
             "address": "addrA", "worker": "rig1", "reward": 5_000_000_000,
             "network_difficulty": 0.5, "last_share_id": later, "status": CANDIDATE,
             "confirmations": 0}])
    # The round goes on past the candidate: 8192 of 0.5 x 65536.
    assert await round_effort(engine, "scrypt") == 0.25
    activity = await pool_activity(engine, algorithm="scrypt", window_seconds=600,
                                   now=T0 + timedelta(minutes=5))
    assert (activity.last_block_height, activity.last_block_status) == (101, "pending")


async def test_prune_stats(engine: AsyncEngine):
    rows = random_shares(8, 200, T0, 4)
    await insert_shares(engine, rows)
    await StatsRoller(engine).roll()
    cutoff = T0 + timedelta(minutes=2)
    minutes, rejects, miner_rejects = tally(rows)
    old = sum(key[0] < cutoff for table in (minutes, rejects, miner_rejects)
              for key in table)
    assert old > 0
    # ... and the pool's row of each of those minutes (stats_pool_minute).
    old_pool_minutes = len({key[0] for key in minutes if key[0] < cutoff})
    assert await prune_stats(engine, cutoff) == old + old_pool_minutes
    async with engine.connect() as connection:
        kept = (await connection.execute(select(stats_pool_minute.c.minute))).scalars().all()
    assert sorted(utc(minute) for minute in kept) == sorted(
        {key[0] for key in minutes if key[0] >= cutoff})
    assert await stored(engine) == (
        {key: value for key, value in minutes.items() if key[0] >= cutoff},
        Counter({key: value for key, value in rejects.items() if key[0] >= cutoff}),
        Counter({key: value for key, value in miner_rejects.items() if key[0] >= cutoff}))


async def test_a_failed_roll_up_is_retried_under_the_supervisor(
        engine: AsyncEngine, caplog: pytest.LogCaptureFixture):
    rows = random_shares(9, 50, T0, 2)
    await insert_shares(engine, rows)
    roller = StatsRoller(engine)
    real_roll, calls, done = roller.roll, [], asyncio.Event()

    async def flaky_roll() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("database down"))
        rolled = await real_roll()
        done.set()
        return rolled

    roller.roll = flaky_roll  # type: ignore[method-assign]
    supervisor = Supervisor()
    supervisor.FIRST_RETRY = 0.01
    supervisor.add(Periodic("stats", roller.roll, 3600))
    with caplog.at_level(logging.INFO):
        supervisor.start(on_fatal=lambda error: None)
        try:
            async with asyncio.timeout(30):
                await done.wait()
        finally:
            await supervisor.stop(5)
    assert "stats failed, degraded until a round succeeds" in caplog.text
    assert "stats recovered after 1 failed round(s)" in caplog.text
    assert supervisor.states()["stats"].state == "ok"
    assert await stored(engine) == tally(rows)
