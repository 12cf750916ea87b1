"""The stratum ports follow the real litecoind's sync state: closed in initial block
download and without peers, open once it is synced, closed again (miners disconnected)
when it loses its peers.

Each test has its own two regtest nodes: they take the network down, which the shared
session nodes must never see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from multipool.chain.rpc import DaemonClient
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_config
from multipool.engine import PoolEngine
from tests.support.stratum_client import RawClient

INTERVAL = 0.2
# The job manager backs off up to 10 s between failed template requests (no peer, IBD),
# and the first job must be there before the ports open.
OPEN_TIMEOUT = 30.0
CLOSE_TIMEOUT = 10.0


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestNetwork]:
    with RegtestNetwork(tmp_path_factory.mktemp("sync-gate"), nodes=2) as network:
        yield network


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.05)


async def peers_of(net: RegtestNetwork, index: int = 0) -> int:
    return await asyncio.to_thread(net.nodes[index].rpc, "getconnectioncount")


async def set_network(net: RegtestNetwork, active: bool) -> None:
    """Take node 0 off the network (it drops every peer) or back on, joined again."""
    node = net.nodes[0]
    await asyncio.to_thread(node.rpc, "setnetworkactive", active)
    deadline = time.monotonic() + CLOSE_TIMEOUT
    if active:
        await asyncio.to_thread(net.connect)
    else:
        while await peers_of(net) > 0:
            assert time.monotonic() < deadline, "node 0 kept its peers"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_pool(net: RegtestNetwork) -> AsyncIterator[tuple[PoolEngine, int]]:
    node = net.nodes[0]
    address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    port = free_port()
    config = regtest_coin_config(node, address=address, port=port, difficulty=1e-3)
    async with DaemonClient(node.rpc_url, user=node.rpc_user,
                            password=node.rpc_password) as daemon:
        engine = PoolEngine(config=config, daemon=daemon, sync_interval=INTERVAL)
        task = asyncio.create_task(engine.run())
        try:
            yield engine, port
        finally:
            task.cancel()
            _, running = await asyncio.wait({task}, timeout=30)
            assert not running, "the pool engine did not stop within 30 s"


async def readings(engine: PoolEngine, count: int) -> None:
    """Wait until the engine has read the daemon's state ``count`` more times."""
    seen: list[object] = []
    deadline = time.monotonic() + count * INTERVAL + CLOSE_TIMEOUT
    while len(seen) < count:
        assert time.monotonic() < deadline, "the engine stopped reading the daemon"
        if engine.sync_state is not None and (not seen or engine.sync_state is not seen[-1]):
            seen.append(engine.sync_state)
        await asyncio.sleep(0.01)


async def ready_client(port: int, address: str) -> RawClient:
    client = await RawClient.connect(port)
    await client.call("mining.subscribe", ["sync-gate-test"])
    assert (await client.call("mining.authorize", [f"{address}.rig", "x"]))["result"] is True
    await client.wait_notification("mining.notify")
    return client


async def test_ports_open_only_once_initial_block_download_is_over(net: RegtestNetwork):
    # A fresh regtest chain (genesis only, from 2011) is in initial block download.
    assert net.nodes[0].rpc("getblockchaininfo")["initialblockdownload"] is True
    async with running_pool(net) as (engine, port):
        await readings(engine, 5)
        assert engine.sync_state is not None
        assert engine.sync_state.reason is not None
        assert engine.sync_state.reason.startswith("initial block download")
        assert engine.sync_state.peers >= 1
        assert not engine.stratum_open
        assert not port_open(port)
        # One block with a current timestamp ends initial block download.
        await asyncio.to_thread(net.mine, 1)
        await wait_until(lambda: port_open(port), OPEN_TIMEOUT, "stratum port opened")
        assert engine.stratum_open
        state = engine.sync_state
        assert state is not None and state.synced
        assert (state.blocks, state.headers) == (1, 1)
        assert engine.jobs.current is not None
        assert engine.jobs.current.template.height == 2


async def test_ports_follow_the_daemons_peers(net: RegtestNetwork,
                                              caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="multipool.engine")
    net.mine(1)  # out of initial block download
    net.sync()
    await set_network(net, False)
    try:
        async with running_pool(net) as (engine, port):
            # No peer: the daemon is "not connected" and the ports stay shut.
            await readings(engine, 5)
            assert engine.sync_state is not None
            assert engine.sync_state.reason == "no peers"
            assert not engine.stratum_open
            assert not port_open(port)

            await set_network(net, True)
            await wait_until(lambda: port_open(port), OPEN_TIMEOUT, "stratum port opened")
            assert engine.stratum_open
            assert engine.sync_state is not None and engine.sync_state.peers >= 1
            address = net.nodes[0].rpc("getnewaddress", "", "bech32", wallet="pool")
            client = await ready_client(port, address)

            # The daemon loses its peers while miners are connected: port shut, miners out.
            await set_network(net, False)
            await wait_until(lambda: not port_open(port), CLOSE_TIMEOUT,
                             "stratum port closed")
            assert await client.closed(timeout=CLOSE_TIMEOUT), "the miner stayed connected"
            assert not engine.stratum_open
            assert engine.sync_state is not None and engine.sync_state.reason == "no peers"
            assert engine.server.sessions == {}

            # And back.
            await set_network(net, True)
            await wait_until(lambda: port_open(port), OPEN_TIMEOUT, "stratum port reopened")
            client = await ready_client(port, address)
            await client.close()
    finally:
        await set_network(net, True)
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("daemon behind (no peers): stratum ports stay closed until it "
                          "is synced") == 1
    assert messages.count("daemon synced: opening stratum ports") == 2
    assert messages.count("daemon behind (no peers): closing stratum ports") == 1
