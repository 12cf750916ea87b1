"""The web's figures after real mining through the stratum port, on SQLite and PostgreSQL.

Two real litecoind regtest nodes; the project's CPU miner mines through the pool engine
in three phases (miner A with workers rig1 and rig2, rig2 only in the first; miner B
with rig1), with the chain matured between them so that the first phase's blocks are
paid, the second's are credited and unpaid, and the third's are pending (immature). A
hand-driven stratum client then sends shares chosen with hashlib.scrypt: one accepted
that is not a block (so the round is not empty), and rejected ones: stale (unknown job),
duplicate, low difficulty.

Every figure PoolReader gives is then computed here independently: its own SQL over the
shares, blocks, block_rewards, balances, payments and payment_batches tables, plain
arithmetic, and the daemon (what the miner's address received). On SQLite the reader is
found through the status.json the engine's PublicStatusWriter writes and opened
read-only; on PostgreSQL it is opened on the coin's URL (the web role's login is tested
in tests/databases/test_web_data.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.payments import PaymentProcessor
from multipool.accounting.rounds import RewardPolicy
from multipool.accounting.stats import StatsRoller
from multipool.accounting.tracker import BlockTracker
from multipool.accounting.writer import ShareWriter
from multipool.chain.rpc import DaemonClient
from multipool.config import to_units
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_config
from multipool.engine import PoolEngine
from multipool.miner import StratumMiner
from multipool.public_status import PublicStatusWriter
from multipool.testdb import PostgresServer
from multipool.web.data import PoolReader, PoolReaders
from tests.functional.conftest import add_miners_wallet
from tests.support.stratum_client import RawClient
from tests.unit.test_stratum_server import build_header

SHARE_DIFFICULTY = 2e-5
# Hashes per unit of scrypt share difficulty, by hand: 2**256 / (0xffff * 2**224).
SCRYPT_HASHES = 2**32 / 0xFFFF
SCRYPT_DIFF1 = 0xFFFF * 2**224
WORDS = {20: "other", 21: "stale", 22: "duplicate", 23: "low difficulty",
         24: "unauthorized", 25: "not subscribed", None: "other"}
OFFLINE_AFTER = 1  # minute


@pytest.fixture
def regtest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestNetwork]:
    """Fresh nodes per backend: each run mines about 220 blocks, short of MWEB (432)."""
    with RegtestNetwork(tmp_path_factory.mktemp("web-figures"), nodes=2) as network:
        yield network


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pool.db'}"
    server: PostgresServer = request.getfixturevalue("postgresql")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@dataclass
class Share:
    id: int
    time: datetime
    address: str
    worker: str
    difficulty: float
    accepted: bool
    reject_code: int | None


def utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def rows(database: Any, sql: str, **params: Any) -> list[Any]:
    async with database.connect() as connection:
        return list((await connection.execute(text(sql), params)).all())


async def mine_phase(port: int, usernames: list[str], net: RegtestNetwork,
                     blocks: int) -> None:
    """Run one throttled CPU miner per username until the chain grew ``blocks``."""
    node = net.nodes[0]
    miners = [StratumMiner(host="127.0.0.1", port=port, username=name, algorithm="scrypt",
                           hashrate_limit=6) for name in usernames]
    tasks = [asyncio.create_task(miner.run()) for miner in miners]
    try:
        async with asyncio.timeout(180):
            while not all(miner.accepted for miner in miners):
                await asyncio.sleep(0.05)
            start = await asyncio.to_thread(node.rpc, "getblockcount")
            while await asyncio.to_thread(node.rpc, "getblockcount") < start + blocks:
                await asyncio.sleep(0.1)
    finally:
        for miner in miners:
            miner.stop()
        _, running = await asyncio.wait(tasks, timeout=30)
        assert not running, "a miner did not stop"


def scrypt_value(header: bytes) -> int:
    return int.from_bytes(hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32),
                          "little")


def nbits_target(nbits: str) -> int:
    value = int(nbits, 16)
    return (value & 0xFFFFFF) << (8 * ((value >> 24) - 3))


async def hand_shares(port: int, worker: str, new_block: Callable[[], object]
                      ) -> dict[str, Any]:
    """Submit chosen shares by hand: one accepted that is no block, then a duplicate of
    it, one of too low difficulty, one for a job id the pool never gave (other), and,
    after ``new_block()`` put a block on the chain, one for the job it retired (stale)."""
    client = await RawClient.connect(port)
    try:
        sub = await client.call("mining.subscribe", ["hand/1"])
        extranonce1, en2_size = sub["result"][1], sub["result"][2]
        assert (await client.call("mining.authorize", [worker, "x"]))["result"] is True
        difficulty = (await client.wait_notification("mining.set_difficulty"))["params"][0]
        notify = (await client.wait_notification("mining.notify"))["params"]
        share_target = min(2**256 - 1, int(SCRYPT_DIFF1 / difficulty))
        block_target = nbits_target(notify[6])
        en2 = "00" * (en2_size - 1) + "07"
        ntime = notify[7]
        good: list[int] = []
        low = None
        for nonce in range(100_000):
            value = scrypt_value(build_header(notify, extranonce1, en2, ntime, nonce)[0])
            if len(good) < 2 and block_target < value <= share_target:
                good.append(nonce)
            elif low is None and value > share_target:
                low = nonce
            if len(good) == 2 and low is not None:
                break
        assert len(good) == 2 and low is not None

        async def submit(job: str, nonce: int) -> dict[str, Any]:
            return await client.call("mining.submit", [worker, job, en2, ntime,
                                                       f"{nonce:08x}"])

        replies = {"accepted": await submit(notify[0], good[0]),
                   "duplicate": await submit(notify[0], good[0]),
                   "low difficulty": await submit(notify[0], low),
                   "other": await submit("ffffffff", good[1])}
        await asyncio.to_thread(new_block)
        while (await client.wait_notification("mining.notify", timeout=30)
               )["params"][0] == notify[0]:
            pass
        replies["stale"] = await submit(notify[0], good[1])
    finally:
        await client.close()
    assert replies["accepted"]["result"] is True, replies
    assert [replies[k]["error"][0] for k in ("duplicate", "low difficulty", "other",
                                              "stale")] == [22, 23, 20, 21], replies
    return replies


@pytest.fixture
async def mined(regtest: RegtestNetwork, url: str, tmp_path: Path
                ) -> AsyncIterator[dict[str, Any]]:
    """The three phases and the hand shares; yields the database, the addresses, the
    time rig2 stopped, and the web root with the engine's status.json."""
    node = regtest.nodes[0]
    miners_wallet = add_miners_wallet(regtest)
    pool_address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    a, b = (node.rpc("getnewaddress", "", "bech32", wallet=miners_wallet) for _ in range(2))
    config = regtest_coin_config(node, address=pool_address, port=free_port(),
                                 difficulty=SHARE_DIFFICULTY, min_payout=0.0001,
                                 database=url)
    regtest.mine(1)  # out of initial block download
    database = create_engine(url)
    await upgrade(database)
    writer = ShareWriter(engine=database, spool_dir=tmp_path / "spool", flush_interval=0.2)
    root = tmp_path / "root"
    try:
        async with DaemonClient(node.rpc_url, user=node.rpc_user, password=node.rpc_password,
                                wallet="pool") as daemon:
            engine = PoolEngine(config=config, daemon=daemon, sink=writer,
                                background=[writer.run])
            engine_task = asyncio.create_task(engine.run())
            try:
                await asyncio.wait_for(engine.server.listening.wait(), 30)
                port = engine.server.bound_ports()[0]
                tracker = BlockTracker(engine=database, daemon=daemon,
                                       policy=RewardPolicy.from_config(config),
                                       maturity=config.network.coinbase_maturity)
                payer = PaymentProcessor.from_config(config, engine=database, wallet=daemon)

                await mine_phase(port, [f"{a}.rig1", f"{a}.rig2", f"{b}.rig1"], regtest, 4)
                rig2_stopped = time.monotonic()
                await writer.flush()
                await asyncio.to_thread(regtest.mine, 101, pool_address)
                await tracker.check()
                report = await payer.run_once()
                assert report.status == "paid", report

                await mine_phase(port, [f"{a}.rig1", f"{b}.rig1"], regtest, 3)
                await writer.flush()
                await asyncio.to_thread(regtest.mine, 101, pool_address)
                await tracker.check()

                await mine_phase(port, [f"{a}.rig1", f"{b}.rig1"], regtest, 3)
                await writer.flush()
                await tracker.check()
                # rig2 offline (no share for OFFLINE_AFTER minutes) before the hand
                # shares, so that at the clock of the check "hand" is online and rig2 not.
                await asyncio.sleep(max(0.0, OFFLINE_AFTER * 60 + 2
                                        - (time.monotonic() - rig2_stopped)))
                await hand_shares(port, f"{a}.hand", lambda: regtest.mine(1, pool_address))
                await writer.flush()
                # status.json's tip is the engine's last sync reading: let it see the
                # block hand_shares mined.
                tip = node.rpc("getblockcount")
                for _ in range(300):
                    if engine.sync_state is not None and engine.sync_state.blocks == tip:
                        break
                    await asyncio.sleep(0.1)
                await StatsRoller(database).roll()
                public = PublicStatusWriter(config=config, database=database, engine=engine,
                                            directory=root / "web" / "ltc",
                                            services=dict)
                (root / "web" / "ltc").mkdir(parents=True)
                await public.publish()
            finally:
                engine_task.cancel()
                _, running = await asyncio.wait({engine_task}, timeout=30)
                assert not running, "the pool engine did not stop"
        yield {"database": database, "a": a, "b": b, "root": root, "url": url,
               "node": node, "miners_wallet": miners_wallet,
               "tip": node.rpc("getblockcount")}
    finally:
        await database.dispose()


async def test_every_figure_matches_the_tables_and_the_daemon(mined: dict[str, Any]):
    database, a, b = mined["database"], mined["a"], mined["b"]
    # The reader's clock and the test's: where the minute after the newest share starts.
    # Every share then lies in a complete minute, the hand shares are less than
    # OFFLINE_AFTER old and rig2's more, however long the set-up took on this machine.
    newest_share = utc((await rows(database, "SELECT max(time) FROM shares"))[0][0])
    minute = newest_share.replace(second=0, microsecond=0) + timedelta(minutes=1)
    now = minute
    if mined["url"].startswith("sqlite"):
        readers = PoolReaders(mined["root"], offline_after=OFFLINE_AFTER, cache_seconds=0)
        reader = await readers.get("ltc")
        assert reader is not None, "status.json must lead to the database"
        assert reader.tip == mined["tip"]
        reader.clock = lambda: now
    else:
        readers = None
        reader = PoolReader(create_engine(mined["url"]), algorithm="scrypt",
                            maturity=101, tip=mined["tip"], offline_after=OFFLINE_AFTER,
                            cache_seconds=0, clock=lambda: now)
    try:
        await check(reader, database, a, b, now, minute, mined)
    finally:
        if readers is not None:
            await readers.close()
        else:
            await reader.close()


async def check(reader: PoolReader, database: Any, a: str, b: str, now: datetime,
                minute: datetime, mined: dict[str, Any]) -> None:
    shares = [Share(r[0], utc(r[1]), r[2], r[3], float(r[4]), bool(r[5]), r[6])
              for r in await rows(database, "SELECT id, time, address, worker, difficulty,"
                                  " accepted, reject_code FROM shares ORDER BY id")]
    assert {s.address for s in shares} == {a, b}

    def window(seconds: int, share: Share) -> bool:
        return minute - timedelta(seconds=seconds) <= share.time < minute

    def hashrate(seconds: int, address: str | None = None,
                 worker: str | None = None) -> float:
        return sum(s.difficulty for s in shares if s.accepted and window(seconds, s)
                   and address in (None, s.address) and worker in (None, s.worker)
                   ) * SCRYPT_HASHES / seconds

    # The round: after the newest recorded block's last share.
    newest = (await rows(database, "SELECT last_share_id, network_difficulty FROM blocks"
                         " WHERE status <> 'candidate' ORDER BY id DESC LIMIT 1"))[0]
    in_round = [s for s in shares if s.id > newest[0] and s.accepted]
    pool_round = sum(s.difficulty for s in in_round)
    mine_round = sum(s.difficulty for s in in_round if s.address == a)
    assert mine_round > 0  # the hand share at least

    pool = await reader.pool()
    for seconds in (600, 3600, 86400):
        assert pool.hashrate[seconds] == pytest.approx(hashrate(seconds), rel=1e-9)
    assert pool.hashrate[600] > 0
    recent = [s for s in shares if window(600, s)]
    assert pool.miners == len({s.address for s in recent}) == 2
    assert pool.workers == len({(s.address, s.worker) for s in recent})
    day = [s for s in shares if window(86400, s)]
    assert pool.accepted_24h == sum(s.accepted for s in day)
    assert pool.rejects_24h == dict(Counter(WORDS[s.reject_code] for s in day
                                            if not s.accepted))
    assert pool.rejects_24h.keys() >= {"stale", "duplicate", "low difficulty", "other"}
    assert pool.round_effort == pytest.approx(pool_round / (newest[1] * 65536), rel=1e-9)
    found = await rows(database, "SELECT count(*) FROM blocks WHERE status IN"
                       " ('pending', 'confirmed')")
    assert pool.blocks_24h == found[0][0] >= 10

    miner = await reader.miner(a)
    assert miner.has_history
    for seconds in (600, 3600, 86400):
        assert miner.hashrate[seconds] == pytest.approx(hashrate(seconds, a), rel=1e-9)
    immature = (await rows(database, "SELECT coalesce(sum(r.amount), 0) FROM block_rewards r"
                           " JOIN blocks k ON k.id = r.block_id WHERE k.status = 'pending'"
                           " AND r.address = :a", a=a))[0][0]
    unpaid = (await rows(database, "SELECT coalesce(sum(amount), 0) FROM balances"
                         " WHERE address = :a", a=a))[0][0]
    paid = (await rows(database, "SELECT coalesce(sum(p.amount), 0) FROM payments p JOIN"
                       " payment_batches k ON k.id = p.batch_id WHERE p.address = :a AND"
                       " k.status IN ('broadcast', 'confirmed')", a=a))[0][0]
    assert immature > 0 and unpaid > 0 and paid > 0
    assert (miner.immature, miner.unpaid, miner.paid) == (immature, unpaid, paid)
    # What the daemon says the address received (the payment is in the mempool).
    received = mined["node"].rpc("getreceivedbyaddress", a, 0, wallet=mined["miners_wallet"])
    assert to_units(Decimal(str(received)), 8) == paid
    mine_day = [s for s in shares if s.address == a and window(86400, s)]
    assert miner.rejects_24h == dict(Counter(WORDS[s.reject_code] for s in mine_day
                                             if not s.accepted))
    assert miner.round_difficulty == pytest.approx(mine_round, rel=1e-9)
    assert miner.round_share == pytest.approx(mine_round / pool_round, rel=1e-9)

    workers = {w.name: w for w in miner.workers}
    assert set(workers) == {"rig1", "rig2", "hand"}
    for name, worker in workers.items():
        own = [s for s in shares if s.address == a and s.worker == name]
        last = max(s.time for s in own)
        online = now - last <= timedelta(minutes=OFFLINE_AFTER)
        # Exact over offline_after, 5 minutes at least; before, the start of its minute.
        exact = now - last <= timedelta(minutes=max(OFFLINE_AFTER, 5))
        assert worker.last_share == (last if exact else
                                     last.replace(second=0, microsecond=0))
        assert worker.online == online
        assert worker.hashrate == pytest.approx(hashrate(600, a, name), rel=1e-9)
        assert worker.accepted == sum(s.accepted for s in own if window(86400, s))
        assert worker.rejected == sum(not s.accepted for s in own if window(86400, s))
    assert not workers["rig2"].online and workers["hand"].online
    assert await reader.workers(a) == miner.workers

    # Lists: blocks (confirmations from the tip in status.json), payments, miners.
    listed = await reader.blocks(1, 100)
    table = await rows(database, "SELECT height, status, reward FROM blocks WHERE status"
                       " <> 'candidate' ORDER BY height DESC")
    assert [(r.height, r.status, r.reward) for r in listed.items] == [tuple(t) for t in table]
    for row in listed.items:
        assert row.confirmations == mined["tip"] - row.height + 1
    assert {r.status for r in listed.items} == {"pending", "confirmed"}
    batches = await rows(database, "SELECT id, txid, total FROM payment_batches")
    assert [(p.batch_id, p.txid, p.amount) for p in (await reader.payments()).items] == [
        tuple(t) for t in batches]
    mine_paid = await reader.miner_payments(a)
    assert sum(p.amount for p in mine_paid.items) == paid
    ranked = await reader.miners(window=3600)
    assert [m.address for m in ranked.items] == sorted(
        (a, b), key=lambda x: (-hashrate(3600, x), x))
    assert ranked.items[0].hashrate == pytest.approx(hashrate(3600, ranked.items[0].address),
                                                     rel=1e-9)
