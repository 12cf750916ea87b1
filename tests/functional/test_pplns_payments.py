"""End to end on the real litecoind and each database: three miners of different speeds
mine through the stratum port, the blocks mature, and a payment run sends each miner's
wallet address exactly what an independent PPLNS computation over the shares table
says, to the smallest unit."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy import select

from multipool.accounting import bookkeeping
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.payments import PaymentProcessor
from multipool.accounting.rounds import RewardPolicy
from multipool.accounting.schema import blocks, shares
from multipool.accounting.tracker import BlockTracker
from multipool.accounting.writer import ShareWriter
from multipool.chain.rpc import DaemonClient
from multipool.config import to_units
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_config
from multipool.engine import PoolEngine
from multipool.miner import StratumMiner
from tests.functional.conftest import add_miners_wallet

POOL_BLOCKS = 12
FEE_PERCENT = 1


def expected_pplns(share_rows, block_rows) -> dict[str, int]:
    """Each confirmed block's reward less the fee, split over the accepted shares among
    the last 2 x network difficulty (scrypt share units: x 65536) up to its last share,
    the oldest counted in part; every amount rounded down. Exact fractions throughout."""
    totals: dict[str, int] = {}
    for reward, network_difficulty, last_share_id, status in block_rows:
        if status != "confirmed":
            continue
        room = 2 * Fraction(network_difficulty) * 65536
        weights: dict[str, Fraction] = {}
        for share_id, address, difficulty, accepted in reversed(share_rows):
            if share_id > last_share_id or not accepted:
                continue
            if room <= 0:
                break
            counted = min(Fraction(difficulty), room)
            weights[address] = weights.get(address, Fraction(0)) + counted
            room -= counted
        to_miners = reward - reward * FEE_PERCENT // 100
        whole = sum(weights.values(), Fraction(0))
        for address, weight in weights.items():
            totals[address] = totals.get(address, 0) + int(to_miners * weight / whole)
    return totals


@pytest.fixture
def regtest(tmp_path_factory: pytest.TempPathFactory):
    """Fresh nodes for each database: each run mines about 150 blocks, and the chain must
    stay short of MWEB activation (height 432), whose block needs a peg-in."""
    with RegtestNetwork(tmp_path_factory.mktemp("pplns"), nodes=2) as network:
        yield network


async def test_three_miners_are_paid_their_pplns_share(
        regtest: RegtestNetwork, database_url: str, tmp_path: Path):
    miners_wallet = add_miners_wallet(regtest)
    node = regtest.nodes[0]
    pool_address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    miner_addresses = [node.rpc("getnewaddress", "", "bech32", wallet=miners_wallet)
                       for _ in range(3)]
    config = regtest_coin_config(node, address=pool_address, port=free_port(),
                                 difficulty=1e-6, fee_percent=float(FEE_PERCENT),
                                 min_payout=0.0001, database=database_url)
    regtest.mine(1)  # a fresh chain is in initial sync and gives no block template
    database = create_engine(database_url)
    await upgrade(database)
    writer = ShareWriter(engine=database, spool_dir=tmp_path / "spool", flush_interval=0.2)
    start_height = node.rpc("getblockcount")
    try:
        async with DaemonClient(node.rpc_url, user=node.rpc_user, password=node.rpc_password,
                                wallet="pool") as daemon:
            engine = PoolEngine(config=config, daemon=daemon, sink=writer,
                                background=[writer.run])
            engine_task = asyncio.create_task(engine.run())
            await asyncio.wait_for(engine.server.listening.wait(), 30)
            port = engine.server.bound_ports()[0]
            miners = [StratumMiner(host="127.0.0.1", port=port, username=f"{address}.rig",
                                   algorithm="scrypt", hashrate_limit=rate)
                      for address, rate in zip(miner_addresses, (4, 8, 12), strict=True)]
            miner_tasks = [asyncio.create_task(miner.run()) for miner in miners]
            async with asyncio.timeout(120):
                # Count pool blocks from when all three are mining.
                while not all(miner.accepted for miner in miners):
                    await asyncio.sleep(0.05)
                counted_from = node.rpc("getblockcount")
                while node.rpc("getblockcount") < counted_from + POOL_BLOCKS:
                    await asyncio.sleep(0.1)
            for miner in miners:
                miner.stop()
            _, still_running = await asyncio.wait(miner_tasks, timeout=30)
            engine_task.cancel()
            _, engine_running = await asyncio.wait({engine_task}, timeout=30)
            assert not still_running and not engine_running, "miners or engine did not stop"

            # Maturity: 101 blocks mined outside the pool, into the pool wallet. They
            # are not the pool's blocks and must not be credited to anyone.
            regtest.mine(101, pool_address)
            # As pool serve runs it: the chain is read for pool blocks the database
            # misses, which the outside blocks, without the pool tag, are not.
            tracker = BlockTracker(engine=database, daemon=daemon,
                                   policy=RewardPolicy.from_config(config),
                                   maturity=config.network.coinbase_maturity,
                                   pool_tag=config.stratum.pool_tag.encode(),
                                   payout_script=config.payout_script)
            assert (await tracker.check())["recorded"] == 0
            payer = PaymentProcessor.from_config(config, engine=database, wallet=daemon)
            report = await payer.run_once()

        async with database.connect() as connection:
            share_rows = (await connection.execute(
                select(shares.c.id, shares.c.address, shares.c.difficulty, shares.c.accepted)
                .order_by(shares.c.id))).all()
            block_rows = (await connection.execute(
                select(blocks.c.reward, blocks.c.network_difficulty, blocks.c.last_share_id,
                       blocks.c.status, blocks.c.height))).all()
            mismatches = await bookkeeping.ledger_mismatches(connection)
        pool_heights = {row.height for row in block_rows}
        chain_heights = set(range(start_height + 1, node.rpc("getblockcount") + 1))
        # Every block the pool found is recorded; none of the 101 outside ones is.
        assert len(pool_heights) >= POOL_BLOCKS
        assert pool_heights <= chain_heights
        assert not pool_heights & set(range(node.rpc("getblockcount") - 100,
                                            node.rpc("getblockcount") + 1))
        assert all(row.status == "confirmed" for row in block_rows)
        expected = expected_pplns(share_rows, [tuple(row)[:4] for row in block_rows])
        assert set(expected) == set(miner_addresses), "each miner has shares in a window"
        assert report.status == "paid" and report.paid == 3
        for address in miner_addresses:
            got = to_units(Decimal(str(node.rpc("getreceivedbyaddress", address, 0,
                                                wallet=miners_wallet))), 8)
            assert got == expected[address], address
        assert mismatches == []
    finally:
        await database.dispose()
