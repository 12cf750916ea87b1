"""DaemonClient against real litecoind regtest nodes (see conftest.py for the fixture)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from multipool.chain.rpc import DaemonAuthError, DaemonClient, DaemonError, DaemonUnavailable
from multipool.devnet import RegtestNetwork, RegtestNode, free_port

RULES = ["mweb", "segwit"]


def client(node: RegtestNode, **kwargs) -> DaemonClient:
    kwargs.setdefault("password", node.rpc_password)
    return DaemonClient(node.rpc_url, user=node.rpc_user, **kwargs)


async def test_chain_is_regtest(regtest: RegtestNetwork):
    async with client(regtest.nodes[0]) as daemon:
        info = await daemon.getblockchaininfo()
        assert info["chain"] == "regtest"
        assert await daemon.getblockcount() == info["blocks"]
        assert await daemon.getconnectioncount() >= 1


async def test_template_follows_the_tip(regtest: RegtestNetwork):
    regtest.mine(1)
    regtest.sync()
    async with client(regtest.nodes[0]) as daemon:
        template = await daemon.getblocktemplate(RULES)
        best = await daemon.getbestblockhash()
        assert template["previousblockhash"] == best
        assert template["height"] == await daemon.getblockcount() + 1
        assert (await daemon.getblockheader(best))["height"] == template["height"] - 1


async def test_wrong_password_raises_auth_error(regtest: RegtestNetwork):
    async with client(regtest.nodes[0], password="not-the-password") as daemon:
        with pytest.raises(DaemonAuthError) as caught:
            await daemon.getblockcount()
    message = str(caught.value)
    assert "HTTP 401" in message and "rpc_user/rpc_password" in message
    assert "not-the-password" not in message and "not-the-password" not in repr(daemon)


async def test_rpc_error_carries_code_and_message(regtest: RegtestNetwork):
    async with client(regtest.nodes[0]) as daemon:
        with pytest.raises(DaemonError) as caught:
            await daemon.getblockhash(10**6)
        assert caught.value.code == -8
        assert caught.value.message == "Block height out of range"
        assert caught.value.method == "getblockhash"
        with pytest.raises(DaemonError) as caught:
            await daemon.submitblock("00")
        assert caught.value.code == -22  # "Block decode failed"


async def test_wallet_calls_go_to_the_wallet(regtest: RegtestNetwork):
    node = regtest.nodes[0]
    async with client(node, wallet="pool") as daemon:
        address = await daemon.getnewaddress("", "bech32")
        info = await daemon.validateaddress(address)
        assert info["isvalid"] and info["scriptPubKey"].startswith("0014")
    async with client(node, wallet="no-such-wallet") as daemon:
        with pytest.raises(DaemonError) as caught:
            await daemon.getnewaddress()
        assert caught.value.code == -18
        assert await daemon.getblockcount() >= 0  # node-level calls ignore the wallet


async def test_longpoll_returns_soon_after_a_block_on_the_other_node(regtest: RegtestNetwork):
    regtest.mine(1)
    regtest.sync()
    # A short normal timeout: the long poll must not be cut by it.
    async with client(regtest.nodes[0], timeout=2.0) as daemon:
        template = await daemon.getblocktemplate(RULES)
        poll = asyncio.create_task(daemon.getblocktemplate(RULES, template["longpollid"]))
        await asyncio.sleep(2.5)
        assert not poll.done()
        address = regtest.nodes[0].rpc("getnewaddress", wallet="pool")
        started = time.monotonic()
        (new_tip,) = await asyncio.to_thread(regtest.nodes[1].rpc, "generatetoaddress", 1,
                                             address)
        fresh = await asyncio.wait_for(poll, 5)
        assert time.monotonic() - started < 5
        assert fresh["previousblockhash"] == new_tip
        assert fresh["height"] == template["height"] + 1


async def test_client_reconnects_after_a_daemon_restart(regtest: RegtestNetwork,
                                                        caplog: pytest.LogCaptureFixture):
    node = regtest.nodes[1]
    caplog.set_level(logging.INFO, logger="multipool.daemon")
    try:
        async with client(node) as daemon:
            height = await daemon.getblockcount()
            await asyncio.to_thread(node.stop)
            call = asyncio.create_task(daemon.getblockcount())
            await asyncio.sleep(1.0)
            assert not call.done()  # failing over: retrying, not raising
            await asyncio.to_thread(node.start)
            assert await asyncio.wait_for(call, 15) == height
            assert await daemon.getbestblockhash() == node.rpc("getbestblockhash")
    finally:
        if not node.running():
            node.start()
        regtest.connect()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot connect" in warnings[0].getMessage()
    restored = [r for r in caplog.records if "connection to daemon restored" in r.getMessage()]
    assert len(restored) == 1
    assert node.rpc_password not in caplog.text


async def test_unreachable_daemon_raises_after_the_retry_budget():
    url = f"http://127.0.0.1:{free_port()}/"
    async with DaemonClient(url, user="u", password="p", retry_for=1) as daemon:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable) as caught:
            await daemon.getblockcount()
    assert 1 <= time.monotonic() - started < 3
    assert url in str(caught.value) and "getblockcount" in str(caught.value)


def test_network_stops_every_node_even_when_the_body_fails(tmp_path: Path):
    with pytest.raises(RuntimeError, match="boom"), RegtestNetwork(tmp_path, nodes=2) as net:
        processes = [node.process for node in net.nodes]
        raise RuntimeError("boom")
    assert all(p is not None and p.poll() is not None for p in processes)
