"""The web's read side (web/data.py PoolReader) on SQLite, PostgreSQL and MariaDB (real
servers): every figure checked against one computed here, with plain arithmetic, from
the rows the test inserted. On SQLite the reader opens the file read-only as the web
process does."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, event, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import _config, upgrade
from multipool.accounting.schema import (
    balances,
    block_rewards,
    blocks,
    ledger,
    payment_batches,
    payments,
    shares,
)
from multipool.accounting.stats import StatsRoller, miner_ranking
from multipool.config import parse_coin_config
from multipool.public_status import PublicStatusWriter
from multipool.web.data import MAX_PER_PAGE, PoolReader, PoolReaders
from multipool.web.database import ServerDatabase, open_read_only
from multipool.web.status import DatabaseLocation, StatusError, parse_status
from tests.databases.test_coin_databases import (  # noqa: F401 - fixtures
    WEB_PASSWORD,
    _migrate,
    admin_url,
    generate_password,
    mariadb_admin,
    new_prefix,
    set_up,
)

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
MINUTE = NOW.replace(second=0)  # windows end where the current minute starts
# Hashes per unit of scrypt share difficulty, by hand: 2**256 / (0xffff * 2**224).
SCRYPT_HASHES = 2**32 / 0xFFFF
# Exact in every backend's float, so sums compare closely.
DIFFICULTIES = [0.5, 1.0, 2.0, 4.0, 1024.0]
WORDS = {20: "other", 21: "stale", 22: "duplicate", 23: "low difficulty",
         24: "unauthorized", 25: "not subscribed", None: "other"}
ADDRESSES = ["addrA", "addrB", "addrC", "addrD"]
TIP = 120
NETWORK_DIFFICULTY = 0.002  # sha256d units: 0.002 x 65536 in scrypt shares


def make_shares(seed: int = 7, count: int = 1500) -> list[dict[str, Any]]:
    """Shares over the 26 hours before NOW (whole seconds), in time order, a few in the
    current minute; rig9 of addrA stops 30 minutes before NOW."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        address = rng.choice(ADDRESSES)
        worker = rng.choice(["rig1", "rig2", "rig9"] if address == "addrA" else ["", "w1"])
        seconds = rng.randrange(1, 26 * 3600)
        if worker == "rig9" and seconds < 30 * 60:
            seconds += 30 * 60
        accepted = rng.random() < 0.8
        rows.append({"time": NOW - timedelta(seconds=seconds), "height": 100,
                     "address": address, "worker": worker, "ip": "192.0.2.7",
                     "difficulty": rng.choice(DIFFICULTIES), "share_difficulty": 9.0,
                     "accepted": accepted,
                     "reject_code": None if accepted else rng.choice(
                         [20, 21, 22, 23, 24, 25, None])})
    rows.sort(key=lambda row: row["time"])
    return rows


async def fill(engine: AsyncEngine) -> dict[str, Any]:
    """Insert shares, blocks, rewards, balances and payments; roll the statistics up.
    Return what the expectations need (the shares with their ids, the round's start)."""
    rows = make_shares()
    async with engine.begin() as connection:
        await connection.execute(insert(shares), rows)
        ids = (await connection.execute(select(shares.c.id).order_by(shares.c.id))
               ).scalars().all()
    for row, share_id in zip(rows, ids, strict=True):
        row["id"] = share_id
    # Blocks, in id order: confirmed, orphaned, pending (the newest: the round starts
    # after its last share), then a candidate (not a block yet).
    spec = [(101, "confirmed", 400, NOW - timedelta(hours=30)),
            (105, "orphaned", 700, NOW - timedelta(hours=20)),
            (110, "pending", 1100, NOW - timedelta(hours=3)),
            (111, "candidate", 1300, NOW - timedelta(hours=1))]
    block_rows = [{"height": height, "hash": f"{height:064x}", "time": time,
                   "address": "addrB", "worker": "w1", "reward": 5_000_000_000 + height,
                   "network_difficulty": NETWORK_DIFFICULTY, "effort": height / 100,
                   "last_share_id": ids[index], "status": status, "confirmations": 0}
                  for height, status, index, time in spec]
    batches = [("confirmed", 100), ("broadcast", 200), ("failed", 400), ("intent", 800),
               ("voiding", 1600)]
    async with engine.begin() as connection:
        await connection.execute(insert(blocks), block_rows)
        block_ids = (await connection.execute(select(blocks.c.id).order_by(blocks.c.id))
                     ).scalars().all()
        await connection.execute(insert(block_rewards), [
            {"block_id": block_ids[0], "address": "addrA", "amount": 11},
            {"block_id": block_ids[1], "address": "addrA", "amount": 22},
            {"block_id": block_ids[2], "address": "addrA", "amount": 44},
            {"block_id": block_ids[2], "address": "addrB", "amount": 88}])
        await connection.execute(insert(balances), [{"address": "addrA", "amount": 777},
                                                    {"address": "addrB", "amount": 5}])
        await connection.execute(insert(ledger), [
            {"time": NOW, "address": "addrE", "amount": 1, "kind": "adjustment"}])
        for n, (status, amount) in enumerate(batches):
            batch_id = str(uuid.UUID(int=n + 1))
            await connection.execute(insert(payment_batches).values(
                id=batch_id, created=NOW - timedelta(hours=10 - n), status=status,
                txid=f"{n:064x}", total=amount + 3, fee=n))
            await connection.execute(insert(payments), [
                {"batch_id": batch_id, "address": "addrA", "amount": amount, "fee": 0},
                {"batch_id": batch_id, "address": "addrC", "amount": 3, "fee": 0}])
    await StatsRoller(engine).roll()
    return {"shares": rows, "blocks": block_rows, "round_after": ids[1100],
            "batches": batches}


def in_window(row: dict[str, Any], seconds: int) -> bool:
    return MINUTE - timedelta(seconds=seconds) <= row["time"] < MINUTE


def rate(rows: list[dict[str, Any]], seconds: int, address: str | None = None,
         worker: str | None = None) -> float:
    return sum(r["difficulty"] for r in rows
               if r["accepted"] and in_window(r, seconds)
               and address in (None, r["address"]) and worker in (None, r["worker"])
               ) * SCRYPT_HASHES / seconds


def words(rows: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(WORDS[r["reject_code"]] for r in rows if not r["accepted"]))


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-9)


def committed(statement: str) -> Callable[[Connection], None]:
    """A call for ReadOnlyDatabase.run that runs a statement and commits it."""
    def run(connection: Connection) -> None:
        connection.execute(text(statement))
        connection.commit()
    return run


@pytest.fixture
async def filled(engine: AsyncEngine, database_url: str, tmp_path: Path
                 ) -> tuple[PoolReader, dict[str, Any]]:
    facts = await fill(engine)
    if database_url.startswith("sqlite"):
        reading = open_read_only(DatabaseLocation("sqlite", path=make_url(
            database_url).database), password=None)
    else:
        reading = create_engine(database_url)
    reader = PoolReader(reading, algorithm="scrypt", maturity=101, tip=TIP,
                        offline_after=10, cache_seconds=0, clock=lambda: NOW)
    yield reader, facts
    await reader.close()


async def test_pool_figures_match_the_shares_and_blocks(filled):
    reader, facts = filled
    rows = facts["shares"]
    figures = await reader.pool()
    assert figures.hashrate == {w: approx(rate(rows, w)) for w in (600, 3600, 86400)}
    assert figures.hashrate[600] > 0
    recent = [r for r in rows if in_window(r, 600)]
    assert figures.miners == len({r["address"] for r in recent})
    assert figures.workers == len({(r["address"], r["worker"]) for r in recent})
    assert figures.blocks_24h == sum(
        1 for b in facts["blocks"]
        if b["time"] >= NOW - timedelta(days=1) and b["status"] in ("pending", "confirmed"))
    day = [r for r in rows if in_window(r, 86400)]
    assert figures.accepted_24h == sum(r["accepted"] for r in day)
    assert figures.rejects_24h == words(day)
    assert set(figures.rejects_24h) >= {"stale", "duplicate", "low difficulty"}
    last = figures.last_block
    assert last is not None and (last.height, last.status) == (110, "pending")
    assert (last.confirmations, last.maturity, last.reward) == (TIP - 110 + 1, 101,
                                                                5_000_000_110)
    round_work = sum(r["difficulty"] for r in rows
                     if r["id"] > facts["round_after"] and r["accepted"])
    assert figures.round_effort == approx(round_work / (NETWORK_DIFFICULTY * 65536))


async def test_miner_figures_money_workers_rejects_and_round_share(filled):
    reader, facts = filled
    rows = facts["shares"]
    miner = await reader.miner("addrA")
    assert miner.has_history
    assert miner.hashrate == {w: approx(rate(rows, w, "addrA")) for w in (600, 3600, 86400)}
    # Immature: the pending block's credit only; paid: broadcast + confirmed batches.
    assert (miner.immature, miner.unpaid, miner.paid) == (44, 777, 100 + 200)
    # Whole minutes ending where the current minute starts, as every 24 h figure.
    day = [r for r in rows if r["address"] == "addrA" and in_window(r, 86400)]
    assert miner.rejects_24h == words(day)
    mine = sum(r["difficulty"] for r in rows if r["id"] > facts["round_after"]
               and r["accepted"] and r["address"] == "addrA")
    pool = sum(r["difficulty"] for r in rows if r["id"] > facts["round_after"]
               and r["accepted"])
    assert miner.round_difficulty == approx(mine)
    assert miner.round_share == approx(mine / pool)
    assert 0 < miner.round_share < 1

    expected_workers = {}
    for name in sorted({r["worker"] for r in rows if r["address"] == "addrA"
                        and MINUTE - timedelta(days=1) <= r["time"] <= NOW}):
        own = [r for r in rows if r["address"] == "addrA" and r["worker"] == name]
        last = max(r["time"] for r in own if r["time"] <= NOW)
        online = NOW - last <= timedelta(minutes=10)
        expected_workers[name] = (
            approx(rate(rows, 600, "addrA", name)),
            sum(r["accepted"] for r in own if in_window(r, 86400)),
            sum(not r["accepted"] for r in own if in_window(r, 86400)),
            # Exact while online; an offline worker's is the start of its minute.
            last if online else last.replace(second=0), online)
    got = {w.name: (w.hashrate, w.accepted, w.rejected, w.last_share, w.online)
           for w in miner.workers}
    assert got == expected_workers
    assert got["rig9"][4] is False  # stopped 30 minutes ago: offline after 10
    assert got["rig9"][3].second == 0 and any(t.second for _, _, _, t, _ in got.values())
    assert any(online for *_, online in got.values())
    assert await reader.workers("addrA") == miner.workers


@pytest.mark.parametrize("later", [0, 17, 43, 59])
async def test_miner_figures_wherever_in_the_hour_now_is(filled, later: int):
    """A miner's hashrates, worker counts and newest shares (whole hours of the day
    from stats_hour, minutes around them) match the shares, computed here, wherever in
    the hour the window ends."""
    reader, facts = filled
    rows = facts["shares"]
    now = NOW + timedelta(minutes=later)
    end = now.replace(second=0)
    reader.clock = lambda: now
    miner = await reader.miner("addrA")
    for seconds in (600, 3600, 86400):
        assert miner.hashrate[seconds] == approx(sum(
            r["difficulty"] for r in rows if r["accepted"] and r["address"] == "addrA"
            and end - timedelta(seconds=seconds) <= r["time"] < end) * SCRYPT_HASHES
            / seconds)
    expected = {}
    for name in sorted({r["worker"] for r in rows if r["address"] == "addrA"
                        and end - timedelta(days=1) <= r["time"] <= now}):
        own = [r for r in rows if r["address"] == "addrA" and r["worker"] == name]
        day = [r for r in own if end - timedelta(days=1) <= r["time"] < end]
        last = max(r["time"] for r in own if r["time"] <= now)
        expected[name] = (sum(r["accepted"] for r in day),
                          sum(not r["accepted"] for r in day),
                          last if now - last <= timedelta(minutes=10)
                          else last.replace(second=0))
    assert {w.name: (w.accepted, w.rejected, w.last_share) for w in miner.workers} == expected
    assert len(expected) == 3


async def test_an_address_the_pool_never_saw_has_no_history(filled):
    reader, _ = filled
    nobody = await reader.miner("addrZ")
    assert not nobody.has_history
    assert (nobody.immature, nobody.unpaid, nobody.paid, nobody.workers) == (0, 0, 0, ())
    assert nobody.hashrate == {600: 0.0, 3600: 0.0, 86400: 0.0}
    assert nobody.round_share == 0.0 and nobody.rejects_24h == {}
    # Seen only in the ledger (an adjustment): history, no shares.
    assert (await reader.miner("addrE")).has_history


async def test_lists_newest_first_paged_and_clamped(filled):
    reader, facts = filled
    found = await reader.blocks(1, 2)
    assert found.total == 3  # the candidate is not a block yet
    assert [(b.height, b.status, b.confirmations) for b in found.items] == [
        (110, "pending", TIP - 110 + 1), (105, "orphaned", None)]
    second = await reader.blocks(2, 2)
    assert [(b.height, b.confirmations, b.effort) for b in second.items] == [
        (101, TIP - 101 + 1, approx(1.01))]
    assert (await reader.blocks(5, 2)).items == ()

    paid = await reader.payments(1, 20)
    assert paid.total == 5
    assert [(p.status, p.amount, p.fee, p.recipients) for p in paid.items] == [
        (status, amount + 3, n, 2) for n, (status, amount) in reversed(
            list(enumerate(facts["batches"])))]
    mine = await reader.miner_payments("addrA", 2, 2)
    assert mine.total == 5 and [p.amount for p in mine.items] == [400, 200]

    ranked = await reader.miners(1, 2, window=3600)
    hour = [r for r in facts["shares"] if in_window(r, 3600)]
    by_address: dict[str, float] = Counter()
    for r in hour:
        by_address[r["address"]] += r["difficulty"] if r["accepted"] else 0.0
    order = sorted(by_address, key=lambda a: (-by_address[a], a))
    assert ranked.total == len(order)
    assert [(m.address, m.hashrate) for m in ranked.items] == [
        (a, approx(by_address[a] * SCRYPT_HASHES / 3600)) for a in order[:2]]
    assert ranked.items[0].workers == len({r["worker"] for r in hour
                                           if r["address"] == order[0]})
    assert ranked.items[0].accepted == sum(r["accepted"] for r in hour
                                           if r["address"] == order[0])

    clamped = await reader.blocks(0, 10_000)
    assert (clamped.page, clamped.per_page) == (1, MAX_PER_PAGE)
    huge = await reader.payments(10**30, 5)
    assert huge.items == () and huge.total == 5
    with pytest.raises(ValueError, match="whole minutes"):
        await reader.miners(window=90)


async def test_hashrate_series_has_every_bucket(filled):
    reader, facts = filled
    series = await reader.hashrate_series("addrA", hours=3, bucket_minutes=20)
    assert len(series) == 9
    assert series[-1].time == MINUTE - timedelta(minutes=20)
    for point in series:
        total = sum(r["difficulty"] for r in facts["shares"]
                    if r["accepted"] and r["address"] == "addrA"
                    and point.time <= r["time"] < point.time + timedelta(minutes=20))
        assert point.hashrate == approx(total * SCRYPT_HASHES / 1200), point.time
    pool = await reader.hashrate_series(hours=24)
    assert len(pool) == 144 and sum(p.hashrate for p in pool) == approx(
        rate(facts["shares"], 86400) * 144)


async def test_a_miner_page_in_one_call_is_its_three_reads(filled):
    reader, _ = filled
    page = await reader.miner_page("addrA", hours=3, bucket_minutes=20, per_page=2)
    # Each of the three reads is checked against the shares and payments above.
    assert page.figures == await reader.miner("addrA")
    assert [(p.time, p.hashrate) for p in page.series] == [
        (p.time, p.hashrate) for p in await reader.hashrate_series(
            "addrA", hours=3, bucket_minutes=20)]
    assert len(page.series) == 9 and page.figures.has_history
    assert page.payments == await reader.miner_payments("addrA", 1, 2)
    assert page.payments.total == 5 and len(page.payments.items) == 2
    with pytest.raises(ValueError, match="positive"):
        await reader.miner_page("addrA", hours=0)


async def test_many_clients_on_one_page_cost_one_query(engine: AsyncEngine,
                                                       database_url: str):
    await fill(engine)
    reader = PoolReader(create_engine(database_url), algorithm="scrypt",
                        cache_seconds=30, clock=lambda: NOW)
    statements: list[str] = []

    def cold_reader() -> PoolReader:
        new = PoolReader(create_engine(database_url), algorithm="scrypt",
                         cache_seconds=30, clock=lambda: NOW)
        assert isinstance(new.database, ServerDatabase)
        event.listen(new.database.engine.sync_engine, "before_cursor_execute",
                     lambda *args: statements.append(args[2]))
        return new

    reader = cold_reader()
    try:
        await reader.pool()
        assert statements
        statements.clear()
        answers = await asyncio.gather(*(reader.pool() for _ in range(200)))
        assert statements == [] and len({id(a) for a in answers}) == 1
        await reader.close()
        # Cold caches: one client's statements, then 200 clients at once: the same.
        reader = cold_reader()
        await reader.miner("addrA")
        alone = len(statements)
        await reader.close()
        statements.clear()
        reader = cold_reader()
        await asyncio.gather(*(reader.miner("addrA") for _ in range(200)))
        assert len(statements) == alone > 0
    finally:
        await reader.close()


# SQLite's read-only mode; the web role on PostgreSQL and MariaDB is tested in
# test_readers_log_in_as_the_web_role and test_coin_databases.py.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_sqlite_reader_cannot_write(tmp_path: Path, engine: AsyncEngine,
                                              database_url: str):
    await fill(engine)
    path = make_url(database_url).database
    reading = open_read_only(DatabaseLocation("sqlite", path=path), password=None)
    try:
        assert await reading.run(lambda connection: connection.execute(
            select(func.count()).select_from(balances)).scalar_one()) == 2
        for statement in ("DELETE FROM balances", "UPDATE balances SET amount = 0",
                          "CREATE TABLE intruder (id INTEGER)"):
            with pytest.raises(OperationalError, match=r"readonly|read-only|query_only"):
                await reading.run(committed(statement))
    finally:
        await reading.dispose()
    async with engine.connect() as connection:
        assert (await connection.execute(select(func.sum(balances.c.amount)))
                ).scalar_one() == 782


def write_status(root: Path, prefix: str, database: dict[str, Any] | None,
                 blocks: int = TIP) -> None:
    document: dict[str, Any] = {
        "version": 1, "updated": datetime.now(UTC).isoformat(),
        "coin": {"prefix": prefix, "algorithm": "scrypt", "maturity": 7},
        "daemon": {"synced": True, "blocks": blocks}}
    if database is not None:
        document["database"] = database
    (root / "web" / prefix).mkdir(parents=True, exist_ok=True)
    (root / "web" / prefix / "status.json").write_text(json.dumps(document))


# The web role's path is tested with real roles in test_readers_log_in_as_the_web_role.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_readers_open_the_database_status_json_names(
        tmp_path: Path, engine: AsyncEngine, database_url: str,
        caplog: pytest.LogCaptureFixture):
    await fill(engine)
    root = tmp_path / "root"
    path = make_url(database_url).database
    write_status(root, "ltc", {"backend": "sqlite", "path": path})
    write_status(root, "old", None)  # an engine that does not publish it
    write_status(root, "gone", {"backend": "sqlite", "path": str(tmp_path / "no.db")})
    readers = PoolReaders(root, offline_after=3, cache_seconds=0)
    try:
        reader = await readers.get("ltc")
        assert reader is not None and reader.offline_after == 3
        assert (reader.tip, reader.maturity) == (TIP, 7)
        assert await readers.get("ltc") is reader
        assert (await reader.miner("addrA")).unpaid == 777
        with caplog.at_level(logging.WARNING, "multipool.web.data"):
            for _ in range(5):
                assert await readers.get("gone") is None
                assert await readers.get("old") is None
                assert await readers.get("../etc") is None
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 2, warned  # once per pool, not once per request
        assert any("gone" in w and "no.db" in w for w in warned)
        assert not (tmp_path / "no.db").exists()  # read-only: never created
    finally:
        await readers.close()


async def test_readers_log_in_as_the_web_role(tmp_path: Path, admin_url: str):  # noqa: F811
    """PostgreSQL and MariaDB: the reader logs in as multipool_web with the password
    from web-database.secret, reads the coin's tables and can write none."""
    prefix = new_prefix()
    url = await asyncio.to_thread(set_up, admin_url, prefix, generate_password())
    await _migrate(url)
    coin = create_engine(url)
    try:
        async with coin.begin() as connection:
            await connection.execute(insert(balances).values(address="addrA", amount=9))
    finally:
        await coin.dispose()
    parsed = make_url(url)
    root = tmp_path / "root"
    write_status(root, prefix, {
        "backend": "postgresql" if parsed.drivername.startswith("postgres") else "mysql",
        "host": parsed.host, "port": parsed.port, "name": parsed.database})
    readers = PoolReaders(root, cache_seconds=0)
    try:
        assert await readers.get(prefix) is None  # no secret file yet
        (root / "web-database.secret").write_text(WEB_PASSWORD + "\n")
        readers._failed.clear()  # the retry delay, skipped
        reader = await readers.get(prefix)
        assert reader is not None
        assert (await reader.miner("addrA")).unpaid == 9
        with pytest.raises(DBAPIError):
            await reader.database.run(committed("DELETE FROM balances"))
    finally:
        await readers.close()


def test_status_json_database_and_maturity_are_parsed_and_optional():
    base = {"version": 1, "updated": "2026-03-01T12:00:00+00:00",
            "coin": {"prefix": "ltc", "maturity": 101}}
    old = parse_status(json.dumps({**base, "coin": {"prefix": "ltc"}}).encode(), "ltc")
    assert old.database is None and old.maturity is None
    status = parse_status(json.dumps({**base, "database": {
        "backend": "postgresql", "host": "db", "port": 5432, "name": "multipool_ltc"}}
    ).encode(), "ltc")
    assert status.maturity == 101
    assert status.database == DatabaseLocation("postgresql", host="db", port=5432,
                                               name="multipool_ltc")
    for bad in ({"backend": "oracle"}, {"backend": "sqlite", "path": "relative.db"},
                {"backend": "sqlite"}, {"backend": "mysql", "host": "", "name": "x"},
                {"backend": "postgresql", "host": "h", "port": 70000, "name": "x"}, []):
        with pytest.raises(StatusError, match="database"):
            parse_status(json.dumps({**base, "database": bad}).encode(), "ltc")


@pytest.mark.parametrize("database", [
    "sqlite:///{tmp}/pool.db",
    "postgresql://ltcpool:s3cret-pw@db.example:5433/multipool_ltc",
    "mariadb://ltcpool:s3cret-pw@127.0.0.1/multipool_ltc"])
def test_the_engine_publishes_where_its_database_is_and_no_credential(
        tmp_path: Path, database: str):
    url = database.format(tmp=tmp_path)
    config = parse_coin_config({
        "coin": {"name": "litecoin", "prefix": "ltc", "symbol": "LTC",
                 "algorithm": "scrypt", "network": "regtest"},
        "daemon": {"rpc_url": "http://127.0.0.1:1", "rpc_user": "u", "rpc_password": "p"},
        "stratum": {"host": "127.0.0.1", "ports": [{"port": 3333, "difficulty": 1}]},
        "pool": {"address": "rltc1q6hnhkmvc0ls0vcjahd9wcau8x37s03mnaez28g",
                 "database": url}}, "test")

    class View:
        sync_state = None
        stratum_open = False

        def counters(self) -> dict[str, object]:
            return {}

    writer = PublicStatusWriter(config=config, database=None,  # type: ignore[arg-type]
                                engine=View(), directory=tmp_path, services=dict)
    document = writer.document(datetime.now(UTC))
    text_form = json.dumps(document)
    assert "s3cret" not in text_form and "ltcpool" not in text_form
    # Litecoin's coinbase maturity is 100 blocks; the tracker confirms one after.
    assert document["coin"]["maturity"] == 101
    if url.startswith("sqlite"):
        assert document["database"] == {"backend": "sqlite",
                                         "path": str(tmp_path / "pool.db")}
    elif url.startswith("postgresql"):
        assert document["database"] == {"backend": "postgresql", "host": "db.example",
                                         "port": 5433, "name": "multipool_ltc"}
    else:
        assert document["database"] == {"backend": "mysql", "host": "127.0.0.1",
                                         "port": None, "name": "multipool_ltc"}
    # ... and what the web makes of it.
    assert parse_status(text_form.encode(), "ltc").database is not None


@pytest.mark.parametrize("window, later", [(86400, 17), (86400, 0), (7200, 43), (3600, 5)])
async def test_the_ranking_over_hours_matches_the_shares(filled, window: int, later: int):
    """Whole hours from stats_hour and the minutes at both ends from stats_minute add up
    to the shares of the window, wherever in the hour it ends."""
    reader, facts = filled
    now = NOW + timedelta(minutes=later)
    end = now.replace(second=0)
    ranked = await reader.database.run(miner_ranking, window, now=now)
    inside = [r for r in facts["shares"] if end - timedelta(seconds=window) <= r["time"] < end]
    difficulty: dict[str, float] = Counter()
    for r in inside:
        difficulty[r["address"]] += r["difficulty"] if r["accepted"] else 0.0
    assert [(m.address, m.difficulty, m.workers, m.accepted, m.rejected) for m in ranked] == [
        (a, approx(difficulty[a]),
         len({r["worker"] for r in inside if r["address"] == a}),
         sum(r["accepted"] for r in inside if r["address"] == a),
         sum(not r["accepted"] for r in inside if r["address"] == a))
        for a in sorted(difficulty, key=lambda a: (-difficulty[a], a))]


async def test_revision_0005_fills_the_pool_and_hour_tables_from_the_minutes(
        database_url: str):
    """A database rolled up before revision 0005: its stats_minute rows are summed into
    stats_pool_minute and stats_hour by the migration."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.upgrade(_config(sync), "0004"))
        minutes = [(NOW - timedelta(minutes=m), address, worker, m % 3 + 1, m / 4, m % 2)
                   for m in range(0, 150, 7) for address in ("addrA", "addrB")
                   for worker in ("", "rig1")]
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO stats_minute (minute, address, worker, accepted,"
                " accepted_difficulty, rejected) VALUES (:m, :a, :w, :acc, :d, :r)"),
                [{"m": m.replace(second=0, tzinfo=None) if engine.dialect.name != "postgresql"
                  else m.replace(second=0), "a": a, "w": w, "acc": acc, "d": d, "r": r}
                 for m, a, w, acc, d, r in minutes])
        await upgrade(engine)
        async with engine.connect() as connection:
            pool = {_utc(r[0]): tuple(r[1:]) for r in await connection.execute(text(
                "SELECT minute, accepted, accepted_difficulty, rejected"
                " FROM stats_pool_minute"))}
            hours = {(_utc(r[0]), r[1], r[2]): tuple(r[3:]) for r in await connection.execute(
                text("SELECT hour, address, worker, accepted, accepted_difficulty, rejected"
                     " FROM stats_hour"))}
    finally:
        await engine.dispose()
    expected_pool: dict[datetime, list[float]] = {}
    expected_hours: dict[tuple[datetime, str, str], list[float]] = {}
    for m, a, w, acc, d, r in minutes:
        minute = m.replace(second=0)
        for table, key in ((expected_pool, minute),
                           (expected_hours, (minute.replace(minute=0), a, w))):
            sums = table.setdefault(key, [0, 0.0, 0])  # type: ignore[arg-type]
            sums[0] += acc
            sums[1] += d
            sums[2] += r
    assert pool == {k: (v[0], approx(v[1]), v[2]) for k, v in expected_pool.items()}
    assert hours == {k: (v[0], approx(v[1]), v[2]) for k, v in expected_hours.items()}
    assert len(hours) > 8


async def test_revision_0006_fills_the_miner_rejects_from_the_rolled_shares(
        database_url: str):
    """A database rolled up before revision 0006: the rejected shares rolled so far
    (ids up to the progress), in the minutes stats_rejects still holds, are counted per
    minute, address and code into stats_miner_rejects by the migration."""
    engine = create_engine(database_url)
    rows = make_shares(seed=11, count=600)
    naive = engine.dialect.name != "postgresql"
    oldest = MINUTE - timedelta(hours=20)  # stats_rejects pruned before this minute
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.upgrade(_config(sync), "0005"))
            await connection.execute(insert(shares), rows)
            ids = (await connection.execute(select(shares.c.id).order_by(shares.c.id))
                   ).scalars().all()
            progress = ids[500]  # the last 99 shares are not rolled yet
            await connection.execute(text(
                "INSERT INTO settings (name, value) VALUES ('stats_last_share_id', :v)"),
                {"v": str(progress)})
            await connection.execute(text(
                "INSERT INTO stats_rejects (minute, reject_code, count) VALUES (:m, 21, 1)"),
                {"m": oldest.replace(tzinfo=None) if naive else oldest})
        await upgrade(engine)
        async with engine.connect() as connection:
            got = Counter({(_utc(r[0]), r[1], r[2]): r[3] for r in await connection.execute(
                text("SELECT minute, address, reject_code, count FROM stats_miner_rejects"))})
    finally:
        await engine.dispose()
    expected: Counter = Counter()
    for row, share_id in zip(rows, ids, strict=True):
        if share_id <= progress and not row["accepted"] and row["time"] >= oldest:
            code = 20 if row["reject_code"] is None else row["reject_code"]
            expected[row["time"].replace(second=0), row["address"], code] += 1
    assert got == expected
    assert len(expected) > 20
    assert any(not r["accepted"] and r["time"] < oldest for r in rows[:500])


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
