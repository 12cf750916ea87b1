"""The pool engine mining real Litecoin regtest blocks through its stratum port.

Two real litecoind nodes; the project's CPU miner connects to the engine's stratum port
and the blocks it finds must be accepted by the daemon and relayed to the second node.
Expected values come from the daemon (validateaddress, getblock), not from our code.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from multipool.chain.rpc import DaemonClient
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_config
from multipool.engine import PoolEngine
from multipool.miner import StratumMiner
from tests.support.running import scrypt_miner

POOL_TAG = "/multipool-test/"
# scrypt share difficulty 2e-5 is a target just under 2^256: most hashes are shares and
# about half of them (regtest target 0x7fffff..) are blocks.
SHARE_DIFFICULTY = 2e-5


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    with RegtestNetwork(tmp_path_factory.mktemp("pool-mining"), nodes=2) as network:
        yield network


def task_stacks() -> str:
    """Where every task of the loop waits: the evidence when something does not stop."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=out)
    return out.getvalue()


@contextlib.asynccontextmanager
async def running_pool(net: RegtestNetwork, address: str) -> AsyncIterator[PoolEngine]:
    config = regtest_coin_config(net.nodes[0], address=address, port=free_port(),
                                 difficulty=SHARE_DIFFICULTY, pool_tag=POOL_TAG)
    node = net.nodes[0]
    async with DaemonClient(node.rpc_url, user=node.rpc_user,
                            password=node.rpc_password) as daemon:
        engine = PoolEngine(config=config, daemon=daemon)
        task = asyncio.create_task(engine.run())
        try:
            await asyncio.wait_for(engine.server.listening.wait(), 30)
            yield engine
        finally:
            task.cancel()
            _, running = await asyncio.wait({task}, timeout=30)
            assert not running, f"the pool engine did not stop within 30 s:\n{task_stacks()}"


def mining(engine: PoolEngine, username: str) -> AbstractAsyncContextManager[StratumMiner]:
    return scrypt_miner(engine.server.bound_ports()[0], username)


async def wait_for_height(net: RegtestNetwork, height: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = await asyncio.to_thread(net.nodes[0].rpc, "getblockcount")
        if count >= height:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"chain did not reach height {height} in {timeout}s (at {count})")


async def wait_synced(net: RegtestNetwork, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tips = [await asyncio.to_thread(node.rpc, "getbestblockhash") for node in net.nodes]
        if len(set(tips)) == 1:
            return tips[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"nodes did not agree on a tip: {tips}")


def block_at(net: RegtestNetwork, height: int, verbosity: int = 2) -> dict:
    node = net.nodes[0]
    return node.rpc("getblock", node.rpc("getblockhash", height), verbosity)


def bip34_prefix(height: int) -> str:
    """The BIP34 height push, written out from the rule (OP_1..OP_16, else minimal LE)."""
    if 1 <= height <= 16:
        return f"{0x50 + height:02x}"
    body = height.to_bytes((height.bit_length() + 7) // 8, "little")
    if body[-1] & 0x80:
        body += b"\x00"  # keep the number positive
    return f"{len(body):02x}" + body.hex()


def pool_address(net: RegtestNetwork, kind: str = "bech32") -> tuple[str, str]:
    node = net.nodes[0]
    address = node.rpc("getnewaddress", "", kind, wallet="pool")
    return address, node.rpc("validateaddress", address)["scriptPubKey"]


async def test_pool_mines_first_blocks_with_small_bip34_heights(net: RegtestNetwork):
    # One block from the daemon takes the chain out of initial block download.
    address, script = pool_address(net)
    if net.nodes[0].rpc("getblockcount") == 0:
        net.nodes[0].rpc("generatetoaddress", 1, address)
    async with running_pool(net, address) as engine, mining(engine, f"{address}.rig1") as miner:
        await wait_for_height(net, 20)
    assert miner.accepted > 0
    assert engine.sink.accepted >= 19
    tip = await wait_synced(net)
    assert net.nodes[1].rpc("getblockheader", tip)["height"] >= 20
    for height in range(2, 21):
        coinbase = block_at(net, height)["tx"][0]
        script_sig = coinbase["vin"][0]["coinbase"]
        assert script_sig.startswith(bip34_prefix(height)), (height, script_sig)
        assert POOL_TAG.encode().hex() in script_sig
        payout = coinbase["vout"][0]
        assert payout["scriptPubKey"]["hex"] == script
        assert payout["value"] > 0
    accepted_blocks = [b for b in engine.sink.blocks if b.accepted]
    assert len(accepted_blocks) >= 19
    assert {b.height for b in accepted_blocks} >= set(range(2, 21))


async def test_blocks_carry_legacy_and_segwit_mempool_transactions(net: RegtestNetwork):
    node = net.nodes[0]
    address, _ = pool_address(net)
    # Mature some coinbases so the pool wallet can pay.
    node.rpc("generatetoaddress", 101, address)
    legacy = node.rpc("sendtoaddress", pool_address(net, "legacy")[0], 1.5, wallet="pool")
    segwit = node.rpc("sendtoaddress", pool_address(net, "bech32")[0], 2.5, wallet="pool")
    start = node.rpc("getblockcount")
    async with running_pool(net, address) as engine, mining(engine, address):
        await wait_for_height(net, start + 2)
    included = {txid for h in range(start + 1, node.rpc("getblockcount") + 1)
                for txid in block_at(net, h, 1)["tx"]}
    assert {legacy, segwit} <= included
    assert node.rpc("getrawmempool") == []
    await wait_synced(net)


async def test_mweb_activation_with_peg_ins(net: RegtestNetwork):
    node = net.nodes[0]
    address, _ = pool_address(net)
    height = node.rpc("getblockcount")
    assert height < 431, "an earlier test mined past MWEB activation"
    node.rpc("generatetoaddress", 431 - height, address)
    # MWEB activates with block 432, which needs a peg-in in the mempool (else the
    # daemon's own template is invalid: bad-txns-vin-empty).
    mweb_address = node.rpc("getnewaddress", "", "mweb", wallet="pool")
    peg_in = node.rpc("sendtoaddress", mweb_address, 3, wallet="pool")
    segwit = node.rpc("sendtoaddress", pool_address(net)[0], 1, wallet="pool")
    async with running_pool(net, address) as engine, mining(engine, address):
        await wait_for_height(net, 433)
        # A peg-in after activation rides in a later pool block as well.
        peg_in_2 = node.rpc("sendtoaddress", node.rpc("getnewaddress", "", "mweb",
                                                      wallet="pool"), 2, wallet="pool")
        legacy = node.rpc("sendtoaddress", pool_address(net, "legacy")[0], 1, wallet="pool")
        await wait_for_height(net, node.rpc("getblockcount") + 2)
    # The pool built and submitted the blocks across activation (not the daemon).
    pool_heights = {b.height for b in engine.sink.blocks if b.accepted}
    assert {432, 433} <= pool_heights
    # The wallet says where each transaction was mined (a peg-in after activation may be
    # a pure MWEB transaction, which lives in the MWEB part of the block, not its tx list).
    sent = {"peg_in": peg_in, "segwit": segwit, "peg_in_2": peg_in_2, "legacy": legacy}
    mined_at = {name: node.rpc("gettransaction", txid, wallet="pool").get("blockheight")
                for name, txid in sent.items()}
    assert all(height in pool_heights for height in mined_at.values()), mined_at
    assert mined_at["peg_in"] == 432, mined_at
    block_432 = block_at(net, 432, 1)
    assert "mweb" in block_432, sorted(block_432)
    # HogEx is the last transaction of an MWEB block.
    hogex = block_at(net, 432, 2)["tx"][-1]
    assert hogex["txid"] == block_432["tx"][-1]
    await wait_synced(net)


async def test_engine_survives_daemon_restart(net: RegtestNetwork):
    node = net.nodes[0]
    address, _ = pool_address(net)
    async with running_pool(net, address) as engine, mining(engine, address) as miner:
        start = node.rpc("getblockcount")
        await wait_for_height(net, start + 1)
        await asyncio.to_thread(node.stop)
        await asyncio.sleep(1)
        await asyncio.to_thread(node.start)
        await asyncio.to_thread(net.connect)
        restarted_at = node.rpc("getblockcount")
        await wait_for_height(net, restarted_at + 2, timeout=120)
        assert miner.accepted > 0
    await wait_synced(net)


def test_pool_serve_command_starts_and_stops_cleanly_on_sigterm(net: RegtestNetwork,
                                                                tmp_path: Path):
    address, _ = pool_address(net)
    port = free_port()
    node = net.nodes[0]
    if node.rpc("getblockcount") == 0:
        node.rpc("generatetoaddress", 1, address)  # out of initial block download
    coin = tmp_path / "ltc.toml"
    coin.write_text(f"""
[coin]
name = "litecoin"
prefix = "ltc"
symbol = "LTC"
algorithm = "scrypt"
network = "regtest"

[daemon]
rpc_url = "{node.rpc_url}"
rpc_user = "{node.rpc_user}"
rpc_password = "{node.rpc_password}"

[stratum]
host = "127.0.0.1"
ports = [ {{ port = {port}, difficulty = 0.001 }} ]

[pool]
address = "{address}"
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "multipool.cli", "pool", "serve", "--coin", str(coin),
         "--allow-root"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"stratum port never opened: {proc.communicate()[1]}")
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stratum listening on 127.0.0.1:" in stderr
    assert "pool engine stopped" in stderr
    # The schema was created on start, beside the coin file (the embedded default).
    assert "database schema upgraded from empty" in stderr
    assert (tmp_path / "pool.db").is_file()
