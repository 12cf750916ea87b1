"""The main job end to end in local mode: `init`, `coin add` of two litecoin regtest
coins (each with its own pair of nodes), `run`; miners on both stratum ports find blocks
and both pools record them, each on a chain of its own: each node has exactly one peer,
its own partner, and the two coins' chains differ. A second `init`/`coin add` changes
nothing, and SIGTERM stops every process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from multipool.chain.address import encode_segwit_address
from multipool.chain.rpc import DaemonClient
from multipool.config import CoinConfig, load_coin_config
from multipool.devnet import free_port
from multipool.miner import StratumMiner
from tests.support.running import stop_run
from tests.support.sockets import listening_ports, processes_with

PREFIXES = ("ltca", "ltcb")


def multipool(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "multipool.cli", *args],
                            capture_output=True, text=True, timeout=300, check=False)
    if check:
        assert result.returncode == 0, f"multipool {' '.join(args)}:\n{result.stderr}"
    return result


def changes_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    return json.loads(result.stdout)["changes"]


def recorded_blocks(root: Path, prefix: str) -> int:
    database = root / "pool" / prefix / "pool.db"
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(database)) as connection:
        try:
            return connection.execute("SELECT count(*) FROM blocks").fetchone()[0]
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def status(root: Path) -> dict[str, dict]:
    result = multipool("status", "--root", str(root), "--json")
    return {coin["prefix"]: coin for coin in json.loads(result.stdout)}


def log_tails(root: Path, lines: int = 15) -> str:
    """The end of every service's log, for a failure to show what the services said."""
    return "\n".join(f"--- {log.name}\n" + "\n".join(
        log.read_text(errors="replace").splitlines()[-lines:])
        for log in sorted((root / "log").glob("*.log")))


async def wait_for(condition, timeout: float, what: str, root: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}"
                        + (f"\n{log_tails(root)}" if root is not None else ""))
        await asyncio.sleep(0.5)


def node_clients(config: CoinConfig) -> dict[str, DaemonClient]:
    """RPC clients of the coin's daemon and of its regtest companion."""
    d = config.daemon
    return {name: DaemonClient(url, user=d.rpc_user, password=d.rpc_password, timeout=10.0,
                               retry_for=0.0)
            for name, url in (("daemon", d.rpc_url),
                              ("companion", f"http://127.0.0.1:{d.peer_rpc_port}"))}


def check_listeners(root: Path, config: CoinConfig) -> None:
    """Each of the coin's nodes listens exactly where its coin.toml says, on 127.0.0.1:
    the daemon on its RPC, p2p and onion-target ports, the companion on its RPC port
    only. A listener on a default port would be shared with every other node."""
    d = config.daemon
    wallet = root / "wallet" / config.coin.prefix
    expected = {
        wallet: {("127.0.0.1", int(d.rpc_url.rsplit(":", 1)[1])),
                 ("127.0.0.1", d.p2p_port), ("127.0.0.1", d.onion_port)},
        wallet / "peer": {("127.0.0.1", d.peer_rpc_port)},
    }
    for datadir, ports in expected.items():
        pids = processes_with(f"-datadir={datadir}")
        assert len(pids) == 1, f"{datadir}: {pids}"
        assert listening_ports(pids[0]) == ports, datadir


async def chain_of(config: CoinConfig) -> tuple[str, str]:
    """Check that the coin's two nodes are each other's one and only peer, and wait
    until they agree on a tip; return the tip and the hash of block 1.

    Told apart by address: the companion connects out to the daemon's p2p port, so the
    companion's peer is that port, and the daemon's one peer is an inbound connection on
    that port from the very address (ip:port) the companion's connection leaves from."""
    p2p = f"127.0.0.1:{config.daemon.p2p_port}"
    clients = node_clients(config)
    async with clients["daemon"] as daemon, clients["companion"] as companion:
        mine, theirs = await daemon.getpeerinfo(), await companion.getpeerinfo()
        where = f"{config.coin.prefix}: daemon peers {mine}, companion peers {theirs}"
        assert len(mine) == 1 and len(theirs) == 1, where
        assert mine[0]["inbound"] and mine[0]["addrbind"] == p2p, where
        assert not theirs[0]["inbound"] and theirs[0]["addr"] == p2p, where
        assert mine[0]["addr"] == theirs[0]["addrbind"], where
        deadline = time.monotonic() + 30
        while (tip := await daemon.getbestblockhash()) != await companion.getbestblockhash():
            assert time.monotonic() < deadline, f"{config.coin.prefix}: nodes disagree"
            await asyncio.sleep(0.2)
        return tip, await daemon.getblockhash(1)


async def test_init_add_two_coins_run_and_mine_both(tmp_path: Path):
    root = tmp_path / "server"
    first = multipool("init", "--root", str(root), "--mode", "local", "--json")
    assert any(c["target"] == str(root / "multipool.toml") for c in changes_of(first))
    assert changes_of(multipool("init", "--root", str(root), "--mode", "local",
                                "--json")) == []
    for prefix in PREFIXES:
        added = multipool("coin", "add", "litecoin", "--prefix", prefix, "--network",
                          "regtest", "--root", str(root), "--json")
        assert changes_of(added), "the first coin add changes something"
        assert changes_of(multipool("coin", "add", "litecoin", "--prefix", prefix,
                                    "--network", "regtest", "--root", str(root),
                                    "--json")) == []
    # The web page on a free port (8080 may be taken), as an operator edits multipool.toml.
    web = f"127.0.0.1:{free_port()}"
    server_file = root / "multipool.toml"
    server_file.write_text(server_file.read_text().replace("127.0.0.1:8080", web))
    listed = json.loads(multipool("coin", "list", "--root", str(root), "--json").stdout)
    ports = {coin["prefix"]: coin["stratum"][0] for coin in listed}
    assert sorted(ports) == list(PREFIXES) and len(set(ports.values())) == 2

    runner = subprocess.Popen([sys.executable, "-m", "multipool.cli", "run", "--root",
                               str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    miners: list[StratumMiner] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await wait_for(lambda: all(s["stratum_listening"] for s in status(root).values()),
                       180, "both pools open their stratum ports", root)
        for prefix in PREFIXES:
            address = encode_segwit_address("rltc", 0, os.urandom(20))
            miner = StratumMiner(host="127.0.0.1", port=ports[prefix],
                                 username=f"{address}.{prefix}", algorithm="scrypt")
            miners.append(miner)
            tasks.append(asyncio.create_task(miner.run()))
        await wait_for(lambda: all(recorded_blocks(root, p) >= 2 for p in PREFIXES), 180,
                       "both pools record blocks", root)
        for coin in status(root).values():
            assert coin["daemon_up"] and coin["synced"], coin
            assert coin["last_block_height"] is not None, coin
        # Each coin on a chain of its own: a node of one coin never meets the other's.
        configs = [load_coin_config(root / "coin" / p / "coin.toml") for p in PREFIXES]
        for config in configs:
            check_listeners(root, config)
        chains = [await chain_of(config) for config in configs]
        (tip_a, first_a), (tip_b, first_b) = chains
        assert tip_a != tip_b and first_a != first_b, chains
        # The web process lists both pools from what their engines publish (every 30 s).
        async with aiohttp.ClientSession() as session:
            async def pools() -> dict[str, dict]:
                async with session.get(f"http://{web}/api/pools") as response:
                    assert response.status == 200
                    return {pool["prefix"]: pool for pool in await response.json()}

            deadline = time.monotonic() + 90
            while True:
                listed_pools = await pools()
                if all(listed_pools.get(p, {}).get("state") == "online"
                       and (listed_pools[p].get("last_block") or {}).get("height")
                       for p in PREFIXES):
                    break
                assert time.monotonic() < deadline, listed_pools
                await asyncio.sleep(1)
            async with session.get(f"http://{web}/") as response:
                page = await response.text()
        for prefix in PREFIXES:
            assert f"stratum+tcp://localhost:{ports[prefix]}" in page
    finally:
        for miner in miners:
            miner.stop()
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        stderr = stop_run(runner)
    assert runner.returncode == 0, stderr[-3000:]
    # Every daemon and engine is gone: nothing answers on the stratum ports any more.
    after = status(root)
    assert not any(coin["daemon_up"] or coin["stratum_listening"] for coin in after.values())
