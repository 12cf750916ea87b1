"""A database that goes away degrades the engine's background services, never stratum.

The whole engine as `pool serve` composes it (engine.run_pool) on a real litecoind regtest
pair and a real PostgreSQL server, with a miner submitting shares. The PostgreSQL server
is stopped: the share writer spools, the block tracker, payments, stats and status rounds
fail, and status.json (still written) shows each of them degraded with its reason, while
the miner's shares keep being accepted. The server comes back: every service is ok again,
and every accepted share reached the database.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from multipool.accounting.database import create_engine
from multipool.accounting.schema import shares
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_config
from multipool.engine import ServiceIntervals, run_pool
from multipool.miner import StratumMiner
from multipool.testdb import PostgresServer, find_pg_bin
from tests.support.requirements import missing

SERVICES = {"shares", "blocks", "payments", "stats", "status"}
INTERVALS = ServiceIntervals(blocks=1.0, stats=1.0, status=0.5)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    with RegtestNetwork(tmp_path_factory.mktemp("degraded"), nodes=2) as network:
        yield network


def read_status(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


async def wait_status(path: Path, condition, timeout: float, what: str) -> dict:
    last = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = read_status(path)
                if last is not None and condition(last):
                    return last
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"not within {timeout} s: {what}; last status: {last}")


def states(document: dict) -> dict[str, str]:
    return {name: service["state"] for name, service in document["services"].items()}


async def test_database_away_degrades_services_while_stratum_answers(
        net: RegtestNetwork, tmp_path: Path):
    if find_pg_bin() is None:
        missing("PostgreSQL")
    node = net.nodes[0]
    address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    node.rpc("generatetoaddress", 1, address)
    public = tmp_path / "public"
    public.mkdir()
    status_file = public / "status.json"
    with PostgresServer() as postgres:
        url = postgres.create_database("degraded")
        port = free_port()
        config = regtest_coin_config(node, address=address, port=port, difficulty=2e-5,
                                     database=url, public_dir=str(public),
                                     state_dir=str(tmp_path), payment_interval=1.0)
        pool = asyncio.create_task(run_pool(config, intervals=INTERVALS))
        miner = StratumMiner(host="127.0.0.1", port=port, username=f"{address}.rig",
                             algorithm="scrypt", hashrate_limit=200)
        miner_task: asyncio.Task[None] | None = None
        try:
            healthy = await wait_status(
                status_file, lambda d: d["stratum"]["open"]
                and set(d["services"]) == SERVICES
                and set(states(d).values()) == {"ok"}, 90, "the pool up, every service ok")
            assert all(s["reason"] is None for s in healthy["services"].values())
            miner_task = asyncio.create_task(miner.run())
            async with asyncio.timeout(60):
                while miner.accepted < 20:
                    await asyncio.sleep(0.1)

            await asyncio.to_thread(postgres.stop_server)
            stopped_at = datetime.now(UTC)
            accepted_before = miner.accepted
            degraded = await wait_status(
                status_file, lambda d: set(states(d).values()) == {"degraded"}, 60,
                "every service degraded while the database is away")
            # Stratum never stopped: shares are still answered, and accepted.
            async with asyncio.timeout(30):
                while miner.accepted < accepted_before + 20:
                    await asyncio.sleep(0.1)
            assert degraded["stratum"]["open"] is True
            services = degraded["services"]
            assert services["shares"]["reason"].startswith("database unreachable")
            for name in SERVICES - {"shares"}:
                reason = services[name]["reason"]
                assert isinstance(reason, str) and reason, (name, services)
            for service in services.values():
                since = datetime.fromisoformat(service["since"])
                assert since.tzinfo is not None and since >= stopped_at.replace(microsecond=0)
            # What needs the database is unknown meanwhile, not stale figures.
            assert degraded["pool"]["hashrate"] is None

            await asyncio.to_thread(postgres.start_server)
            recovered = await wait_status(
                status_file, lambda d: set(states(d).values()) == {"ok"}, 60,
                "every service ok again once the database is back")
            assert all(s["reason"] is None for s in recovered["services"].values())
            assert recovered["pool"]["hashrate"] is not None
        finally:
            miner.stop()
            tasks = {pool} | ({miner_task} if miner_task else set())
            if miner_task is not None:
                await asyncio.wait({miner_task}, timeout=30)
            pool.cancel()
            _, running = await asyncio.wait(tasks, timeout=60)
            assert not running, "the pool or the miner did not stop"
        # The shares accepted while the database was away were spooled and replayed.
        database = create_engine(url)
        try:
            async with database.connect() as connection:
                stored = (await connection.execute(
                    select(func.count()).select_from(shares)
                    .where(shares.c.accepted.is_(True)))).scalar_one()
        finally:
            await database.dispose()
        assert miner.accepted <= stored <= miner.submitted
