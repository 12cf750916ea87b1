"""Chain reconciliation on the real litecoind: a pool block removed from the database is
found again on the chain and split like any other; blocks mined to the pool address
without the pool's tag are not; the watermark keeps a second check from reading the
chain again, and a database without one is read only to the first-scan depth. Block
candidates left by a killed engine are settled from the chain."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select

from multipool.accounting.chainscan import WATERMARK
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.rounds import RewardPolicy
from multipool.accounting.schema import block_rewards, blocks, settings, shares
from multipool.accounting.tracker import BlockTracker
from multipool.accounting.writer import ShareWriter
from multipool.chain.coinbase import read_coinbase
from multipool.chain.rpc import DaemonClient
from multipool.config import to_units
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_config
from multipool.engine import PoolEngine
from multipool.miner import StratumMiner

POOL_TAG = "/multipool-scan/"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    with RegtestNetwork(tmp_path_factory.mktemp("reconcile"), nodes=2) as network:
        network.mine(1)
        yield network


class CountingDaemon:
    """The real daemon client, counting the getblock calls the tracker makes."""

    def __init__(self, daemon: DaemonClient):
        self.daemon = daemon
        self.getblock_calls = 0

    async def getblockheader(self, hash_hex: str, verbose: bool = True) -> Any:
        return await self.daemon.getblockheader(hash_hex, verbose)

    async def getblockcount(self) -> int:
        return await self.daemon.getblockcount()

    async def getblockhash(self, height: int) -> str:
        return await self.daemon.getblockhash(height)

    async def getblock(self, hash_hex: str, verbosity: int = 1) -> Any:
        self.getblock_calls += 1
        return await self.daemon.getblock(hash_hex, verbosity)


async def mine_pool_blocks(net: RegtestNetwork, database, tmp_path: Path, address: str,
                           count: int) -> None:
    node = net.nodes[0]
    config = regtest_coin_config(node, address=address, port=free_port(), difficulty=2e-5,
                                 pool_tag=POOL_TAG)
    writer = ShareWriter(engine=database, spool_dir=tmp_path / "spool", flush_interval=0.1)
    async with DaemonClient(node.rpc_url, user=node.rpc_user,
                            password=node.rpc_password) as daemon:
        engine = PoolEngine(config=config, daemon=daemon, sink=writer,
                            background=[writer.run])
        task = asyncio.create_task(engine.run())
        await asyncio.wait_for(engine.server.listening.wait(), 30)
        miner = StratumMiner(host="127.0.0.1", port=engine.server.bound_ports()[0],
                             username=f"{address}.rig", algorithm="scrypt")
        mining = asyncio.create_task(miner.run())
        target = node.rpc("getblockcount") + count
        async with asyncio.timeout(60):
            while node.rpc("getblockcount") < target:
                await asyncio.sleep(0.05)
        miner.stop()
        for each in (mining, task):
            each.cancel()
        await asyncio.wait({mining, task}, timeout=30)


def coinbase_paid(node, hash_hex: str, script_hex: str) -> int:
    coinbase = node.rpc("getblock", hash_hex, 2)["tx"][0]
    return sum(to_units(Decimal(str(out["value"])), 8) for out in coinbase["vout"]
               if out["scriptPubKey"]["hex"] == script_hex)


async def test_a_pool_block_missing_from_the_database_is_recorded_and_split(
        net: RegtestNetwork, tmp_path: Path):
    node = net.nodes[0]
    address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    script_hex = node.rpc("validateaddress", address)["scriptPubKey"]
    database = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    await upgrade(database)
    policy = RewardPolicy(scheme="pplns", fee_percent=1.0, share_units=65536)
    try:
        await mine_pool_blocks(net, database, tmp_path, address, 4)
        # Two blocks mined to the same address by someone else: no pool tag.
        outside = net.mine(2, address)
        async with database.connect() as connection:
            found = (await connection.execute(
                select(blocks.c.id, blocks.c.height, blocks.c.hash, blocks.c.last_share_id,
                       blocks.c.status).order_by(blocks.c.height))).all()
        assert len(found) >= 4 and all(row.status == "pending" for row in found)
        lost = found[1]
        async with database.begin() as connection:  # as if its row had never landed
            await connection.execute(delete(blocks).where(blocks.c.id == lost.id))

        async with DaemonClient(node.rpc_url, user=node.rpc_user,
                                password=node.rpc_password) as client:
            daemon = CountingDaemon(client)
            tracker = BlockTracker(engine=database, daemon=daemon, policy=policy,
                                   pool_tag=POOL_TAG.encode(),
                                   payout_script=bytes.fromhex(script_hex))
            moved = await tracker.check()
            assert moved["recorded"] == 1
            first_reads = daemon.getblock_calls
            # Every block above the engine's were read: the lost one and the outsiders
            # (the other pool blocks are known and not fetched).
            assert first_reads == node.rpc("getblockcount") - len(found) + 1
            assert (await tracker.check())["recorded"] == 0
            assert daemon.getblock_calls == first_reads  # the watermark: nothing re-read

        async with database.connect() as connection:
            again = (await connection.execute(
                select(blocks).where(blocks.c.hash == lost.hash))).one()
            newest_at_height = (await connection.execute(
                select(func.max(shares.c.id))
                .where(shares.c.height == lost.height, shares.c.accepted.is_(True)))
            ).scalar()
            finder = (await connection.execute(
                select(shares.c.address, shares.c.worker)
                .where(shares.c.id == newest_at_height))).one()
            snapshot = (await connection.execute(
                select(func.sum(block_rewards.c.amount))
                .where(block_rewards.c.block_id == again.id))).scalar()
            recorded_hashes = set((await connection.execute(select(blocks.c.hash))).scalars())
            mark = (await connection.execute(
                select(settings.c.value).where(settings.c.name == WATERMARK))).scalar()
        assert again.height == lost.height and again.status == "pending"
        # The round ends at the newest accepted share at the block's height: the finder's
        # share, or one sent on the same job just after it.
        assert again.last_share_id == newest_at_height >= lost.last_share_id
        assert (again.address, again.worker) == (finder.address, finder.worker)
        assert again.rewards_split and snapshot == again.reward
        assert again.reward == coinbase_paid(node, lost.hash, script_hex)
        assert not recorded_hashes & set(outside)
        assert int(mark) == node.rpc("getblockcount")
    finally:
        await database.dispose()


async def test_first_scan_reads_only_its_depth(net: RegtestNetwork, tmp_path: Path):
    """A database without a watermark is read over the last FIRST_SCAN_DEPTH blocks: a
    missing pool block deeper than that stays unrecorded, one within is recorded."""
    node = net.nodes[0]
    address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    script = bytes.fromhex(node.rpc("validateaddress", address)["scriptPubKey"])
    database = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    await upgrade(database)
    policy = RewardPolicy(scheme="solo", fee_percent=1.0)
    try:
        await mine_pool_blocks(net, database, tmp_path, address, 1)
        async with database.begin() as connection:
            heights = sorted((await connection.execute(select(blocks.c.height))).scalars())
            await connection.execute(delete(blocks))
        net.mine(5)
        tip = node.rpc("getblockcount")
        async with DaemonClient(node.rpc_url, user=node.rpc_user,
                                password=node.rpc_password) as daemon:
            shallow = BlockTracker(engine=database, daemon=daemon, policy=policy,
                                   pool_tag=POOL_TAG.encode(), payout_script=script,
                                   first_scan_depth=tip - heights[-1])  # stops above them
            assert (await shallow.check())["recorded"] == 0
            async with database.begin() as connection:
                await connection.execute(delete(settings).where(settings.c.name == WATERMARK))
            deep = BlockTracker(engine=database, daemon=daemon, policy=policy,
                                pool_tag=POOL_TAG.encode(), payout_script=script,
                                first_scan_depth=tip - heights[0] + 1)
            assert (await deep.check())["recorded"] == len(heights)
        async with database.connect() as connection:
            assert sorted((await connection.execute(select(blocks.c.height))).scalars()) \
                == heights
    finally:
        await database.dispose()


async def test_candidates_are_settled_from_the_chain(net: RegtestNetwork, tmp_path: Path):
    """A candidate whose block is on the chain becomes pending; one the daemon never got
    is dropped once older than the grace, and kept while younger (its submission may be
    in flight)."""
    node = net.nodes[0]
    on_chain = net.mine(1)[0]
    height = node.rpc("getblockcount")
    database = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    await upgrade(database)
    now = datetime.now(UTC)

    def row(hash_hex: str, age: float) -> dict[str, Any]:
        return {"height": height, "hash": hash_hex, "time": now - timedelta(seconds=age),
                "address": "finder", "worker": "rig", "reward": 1, "network_difficulty": 1.0,
                "last_share_id": None, "status": "candidate", "confirmations": 0}
    try:
        async with database.begin() as connection:
            await connection.execute(insert(blocks), [
                row(on_chain, 1.0), row("11" * 32, 1.0), row("22" * 32, 3600.0)])
        async with DaemonClient(node.rpc_url, user=node.rpc_user,
                                password=node.rpc_password) as daemon:
            tracker = BlockTracker(engine=database, daemon=daemon,
                                   policy=RewardPolicy(scheme="solo", fee_percent=1.0),
                                   candidate_grace=600)
            moved = await tracker.check()
        async with database.connect() as connection:
            left = dict((await connection.execute(
                select(blocks.c.hash, blocks.c.status))).all())
        assert moved["dropped"] == 1 and moved["pending"] == 1
        assert left == {on_chain: "pending", "11" * 32: "candidate"}
    finally:
        await database.dispose()


async def test_read_coinbase_agrees_with_the_daemon(net: RegtestNetwork):
    """read_coinbase on every block of the chain (segwit coinbases with a witness
    commitment; the pool's, with its tag, and the daemon's own) against the daemon's
    decoding (getblock verbosity 2)."""
    node = net.nodes[0]
    net.mine(2)
    for height in range(1, node.rpc("getblockcount") + 1):
        hash_hex = node.rpc("getblockhash", height)
        view = read_coinbase(bytes.fromhex(node.rpc("getblock", hash_hex, 0)))
        decoded = node.rpc("getblock", hash_hex, 2)["tx"][0]
        assert view.script_sig.hex() == decoded["vin"][0]["coinbase"]
        assert view.carries(POOL_TAG.encode()) == (
            POOL_TAG.encode().hex() in decoded["vin"][0]["coinbase"])
        assert [(out.value, out.script.hex()) for out in view.outputs] == [
            (to_units(Decimal(str(out["value"])), 8), out["scriptPubKey"]["hex"])
            for out in decoded["vout"]]
