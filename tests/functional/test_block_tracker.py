"""Blocks the pool finds are persisted and followed to confirmed or orphaned on the
real litecoind; an orphan is made with invalidateblock, as a reorganisation would. The
PROP test records real chain blocks as the pool's through the share writer (a miner
would need seconds of luck to find each one at a chosen moment)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from multipool.accounting.bookkeeping import ledger_mismatches
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.rounds import RewardPolicy
from multipool.accounting.schema import balances, block_rewards, blocks, ledger, shares
from multipool.accounting.tracker import BlockTracker
from multipool.accounting.writer import ShareWriter
from multipool.chain.rpc import DaemonClient
from multipool.config import to_units
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_config
from multipool.engine import PoolEngine
from multipool.miner import StratumMiner
from multipool.stratum.sink import BlockCandidate, BlockRecord, ShareRecord


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    with RegtestNetwork(tmp_path_factory.mktemp("tracker"), nodes=2) as network:
        yield network


async def test_pool_blocks_are_persisted_then_confirmed_or_orphaned(net: RegtestNetwork,
                                                                   tmp_path: Path):
    node = net.nodes[0]
    address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    node.rpc("generatetoaddress", 1, address)
    database = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    await upgrade(database)
    config = regtest_coin_config(node, address=address, port=free_port(), difficulty=2e-5)
    writer = ShareWriter(engine=database, spool_dir=tmp_path / "spool")
    async with DaemonClient(node.rpc_url, user=node.rpc_user,
                            password=node.rpc_password) as daemon:
        engine = PoolEngine(config=config, daemon=daemon, sink=writer,
                            background=[writer.run])
        engine_task = asyncio.create_task(engine.run())
        await asyncio.wait_for(engine.server.listening.wait(), 30)
        miner = StratumMiner(host="127.0.0.1", port=engine.server.bound_ports()[0],
                             username=f"{address}.rig", algorithm="scrypt")
        miner_task = asyncio.create_task(miner.run())
        async with asyncio.timeout(60):
            while node.rpc("getblockcount") < 4:
                await asyncio.sleep(0.1)
        miner.stop()
        for task in (miner_task, engine_task):
            task.cancel()
        _, still_running = await asyncio.wait({miner_task, engine_task}, timeout=30)
        assert not still_running, "engine or miner did not stop"

        async with database.connect() as connection:
            found = (await connection.execute(
                select(blocks.c.height, blocks.c.hash, blocks.c.last_share_id)
                .order_by(blocks.c.height))).all()
            share_count = len((await connection.execute(select(shares.c.id))).all())
        # Every block on the chain above height 1 is the pool's, recorded once.
        chain = {h: node.rpc("getblockhash", h) for h in range(2, node.rpc("getblockcount") + 1)}
        assert {(h, x) for h, x, _ in found} == set(chain.items())
        assert share_count >= len(found)
        assert all(last is not None for _, _, last in found)

        policy = RewardPolicy(scheme="pplns", fee_percent=1.0, share_units=65536)
        tracker = BlockTracker(engine=database, daemon=daemon, policy=policy, maturity=100)
        assert (await tracker.check())["confirmed"] == 0  # all too young

        # The daemon drops the newest pool block from its best chain.
        orphan_height, orphan_hash = max(chain.items())
        node.rpc("invalidateblock", orphan_hash)
        moved = await tracker.check()
        assert moved["orphaned"] == 1
        # Mature the rest: 101 more blocks on the other branch.
        node.rpc("generatetoaddress", 101, node.rpc("getnewaddress", wallet="pool"))
        moved = await tracker.check()
        assert moved["confirmed"] == len(chain) - 1
        async with database.connect() as connection:
            statuses = dict((await connection.execute(
                select(blocks.c.height, blocks.c.status))).all())
        assert statuses[orphan_height] == "orphaned"
        assert all(status == "confirmed" for height, status in statuses.items()
                   if height != orphan_height)

        # Money: every block has its snapshot, only confirmed ones reached balances, the
        # orphan paid nothing, and the books balance.
        async with database.connect() as connection:
            found_rows = (await connection.execute(
                select(blocks.c.id, blocks.c.height, blocks.c.reward, blocks.c.status,
                       blocks.c.rewards_split))).all()
            snapshot = dict((await connection.execute(
                select(block_rewards.c.block_id, func.sum(block_rewards.c.amount))
                .group_by(block_rewards.c.block_id))).all())
            credited_blocks = set((await connection.execute(
                select(ledger.c.block_id).where(ledger.c.block_id.is_not(None)))).scalars())
            held = (await connection.execute(select(func.sum(balances.c.amount)))).scalar()
            mismatches = await ledger_mismatches(connection)
        assert all(split for *_, split in found_rows)
        assert all(snapshot[i] == reward for i, _, reward, _, _ in found_rows)
        orphan_id = next(i for i, h, *_ in found_rows if h == orphan_height)
        assert orphan_id not in credited_blocks
        assert credited_blocks == {i for i, *_ in found_rows} - {orphan_id}
        assert held == sum(reward for _, h, reward, *_ in found_rows if h != orphan_height)
        assert mismatches == []
    await database.dispose()


async def test_tracker_waits_out_a_daemon_restart(net: RegtestNetwork, tmp_path: Path):
    """A check that starts while the daemon is down waits for it (the client retries),
    then confirms and credits as usual; nothing is marked while the daemon is away."""
    node = net.nodes[0]
    address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    block_hash = node.rpc("generatetoaddress", 1, address)[0]
    header = node.rpc("getblockheader", block_hash)
    node.rpc("generatetoaddress", 101, node.rpc("getnewaddress", wallet="pool"))
    database = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    await upgrade(database)
    async with database.begin() as connection:  # as if the pool had found it
        await connection.execute(insert(blocks).values(
            height=header["height"], hash=block_hash, time=datetime.now(UTC), address=address,
            worker="rig", reward=5_000_000_000, network_difficulty=1.0, last_share_id=None,
            status="pending", confirmations=0))
    policy = RewardPolicy(scheme="solo", fee_percent=1.0)
    try:
        async with DaemonClient(node.rpc_url, user=node.rpc_user,
                                password=node.rpc_password) as daemon:
            tracker = BlockTracker(engine=database, daemon=daemon, policy=policy)
            node.stop()
            check = asyncio.create_task(tracker.check())
            await asyncio.sleep(1.5)
            assert not check.done()  # waiting for the daemon, not failing
            async with database.connect() as connection:
                assert (await connection.execute(select(blocks.c.status))).scalar() == "pending"
            node.start()
            net.connect()
            moved = await asyncio.wait_for(check, 60)
        assert moved["confirmed"] == 1
        async with database.connect() as connection:
            held = dict((await connection.execute(
                select(balances.c.address, balances.c.amount))).all())
        assert held == {address: 4_950_000_000, "": 50_000_000}  # solo: finder less 1 %
    finally:
        await database.dispose()


def coinbase_value(node, hash_hex: str) -> int:
    coinbase = node.rpc("getblock", hash_hex, 2)["tx"][0]
    return sum(to_units(Decimal(str(out["value"])), 8) for out in coinbase["vout"])


async def record_found_block(writer: ShareWriter, node, hash_hex: str) -> None:
    """Record a real chain block as the pool's: its candidate, then the accepted verdict."""
    header = node.rpc("getblockheader", hash_hex)
    found = dict(time=time.time(), height=header["height"], hash_hex=hash_hex,
                 address="finder", worker="rig", reward=coinbase_value(node, hash_hex),
                 network_difficulty=header["difficulty"])
    await writer.record_candidate(BlockCandidate(**found))
    writer.record_block(BlockRecord(**found, accepted=True, result=None))
    await writer.flush()


async def test_prop_round_after_an_orphan_takes_the_orphans_shares(
        net: RegtestNetwork, database_url: str, tmp_path: Path):
    """PROP on each database with a real orphan: block A is split (alice's shares), then
    the daemon drops it (invalidateblock) and block B replaces it at the same height with
    bob's shares after it. The tracker refreshes A to orphaned before it splits B, so B's
    round is every share since the last block that stands: alice's and bob's."""
    node = net.nodes[0]
    database = create_engine(database_url)
    await upgrade(database)
    writer = ShareWriter(engine=database, spool_dir=tmp_path / "spool")
    policy = RewardPolicy(scheme="prop", fee_percent=1.0)
    try:
        async with DaemonClient(node.rpc_url, user=node.rpc_user,
                                password=node.rpc_password) as daemon:
            tracker = BlockTracker(engine=database, daemon=daemon, policy=policy)
            height = node.rpc("getblockcount") + 1
            for _ in range(10):
                writer.record_share(miner_share("alice", height))
            block_a = node.rpc("generatetoaddress", 1, node.rpc("getnewaddress",
                                                                wallet="pool"))[0]
            await record_found_block(writer, node, block_a)
            assert (await tracker.check())["orphaned"] == 0  # A split: alice's round

            node.rpc("invalidateblock", block_a)
            for _ in range(5):
                writer.record_share(miner_share("bob", height))
            block_b = node.rpc("generatetoaddress", 1, node.rpc("getnewaddress",
                                                                wallet="pool"))[0]
            assert node.rpc("getblockheader", block_b)["height"] == height
            await record_found_block(writer, node, block_b)
            moved = await tracker.check()
        assert moved["orphaned"] == 1
        async with database.connect() as connection:
            ids = dict((await connection.execute(select(blocks.c.hash, blocks.c.id))).all())
            split_b = dict((await connection.execute(
                select(block_rewards.c.address, block_rewards.c.amount)
                .where(block_rewards.c.block_id == ids[block_b]))).all())
            status = dict((await connection.execute(
                select(blocks.c.hash, blocks.c.status))).all())
        assert status == {block_a: "orphaned", block_b: "pending"}
        reward = coinbase_value(node, block_b)
        to_miners = reward - reward // 100
        alice, bob = to_miners * 10 // 15, to_miners * 5 // 15
        assert split_b == {"alice": alice, "bob": bob, "": reward - alice - bob}
    finally:
        await database.dispose()


def miner_share(address: str, height: int) -> ShareRecord:
    return ShareRecord(time=time.time(), address=address, worker="rig", ip="127.0.0.1",
                       job_id="1", height=height, difficulty=1.0, share_difficulty=1.0,
                       accepted=True)
