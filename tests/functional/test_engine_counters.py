"""The engine's counters (``counters`` of status.json) on a real Litecoin regtest network.

The project's CPU miner mines through the stratum port, then a bare stratum client sends
one share of each bad kind: not subscribed (25), unauthorized worker (24), unknown job
(20), low difficulty (23, a nonce whose scrypt hash this test checked is above both the
share and the block target), the same share again (22), and a share on a job retired by
a block the daemon mined itself (21). Every expected figure is what this test sent or
what the miner and the daemon say, never the engine's own output. The status file the
engine writes then goes through the web's reader and out as Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from multipool.chain.header import build_header, prevhash_from_stratum
from multipool.chain.merkle import root_from_branch
from multipool.chain.pow import ALGORITHMS, bits_to_target, hash_to_int, sha256d
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_config
from multipool.engine import ServiceIntervals, run_pool
from multipool.miner import StratumMiner
from multipool.public_status import PublicStatusWriter
from multipool.web.metrics import registry_for
from multipool.web.status import StatusReader
from tests.functional.test_pool_mining import (
    POOL_TAG,
    block_at,
    pool_address,
    running_pool,
    wait_for_height,
)
from tests.support.stratum_client import RawClient

SCRYPT = ALGORITHMS["scrypt"]
TAG = "/multipool-counters/"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    with RegtestNetwork(tmp_path_factory.mktemp("engine-counters"), nodes=2) as network:
        yield network


async def until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def submit_params(worker: str, notify: dict[str, Any], extranonce2: bytes, nonce: int
                  ) -> list[str]:
    job_id, _, _, _, _, _, _, ntime, _ = notify["params"]
    return [worker, job_id, extranonce2.hex(), ntime, f"{nonce:08x}"]


def losing_nonce(notify: dict[str, Any], extranonce1: bytes, extranonce2: bytes,
                 share_target: int) -> int:
    """A nonce whose scrypt hash is above the share target and the block target: a share
    the pool must refuse as low difficulty (regtest blocks are so easy that a random
    nonce solves one about half the time, and a block is never refused)."""
    _, prevhash, coinb1, coinb2, branch, version, nbits, ntime, _ = notify["params"]
    coinbase = bytes.fromhex(coinb1) + extranonce1 + extranonce2 + bytes.fromhex(coinb2)
    root = root_from_branch(sha256d(coinbase), tuple(bytes.fromhex(b) for b in branch))
    block_target = bits_to_target(int(nbits, 16))
    for nonce in range(10_000):
        header = build_header(int(version, 16), prevhash_from_stratum(prevhash), root,
                              int(ntime, 16), int(nbits, 16), nonce)
        digest = hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)
        if hash_to_int(digest) > max(share_target, block_target):
            return nonce
    raise AssertionError("no losing nonce in 10,000: the targets are not what they seem")


async def expect_error(client: RawClient, params: list[str], code: int) -> None:
    reply = await client.call("mining.submit", params, timeout=15)
    assert reply["error"] is not None and reply["error"][0] == code, (code, reply)


async def test_counters_match_what_was_sent(net: RegtestNetwork, tmp_path: Path):
    node = net.nodes[0]
    address, _ = pool_address(net)
    if node.rpc("getblockcount") == 0:
        node.rpc("generatetoaddress", 1, address)
    async with running_pool(net, address) as engine:
        port = engine.server.bound_ports()[0]
        assert engine.counters()["shares"] == {
            "accepted": 0, "rejected": dict.fromkeys(
                ("other", "stale", "duplicate", "low_difficulty", "unauthorized",
                 "not_subscribed"), 0)}

        # 1. The CPU miner finds three blocks; stopped without cancelling, so it waits
        # for the result of every share it sent.
        start = node.rpc("getblockcount")
        miner = StratumMiner(host="127.0.0.1", port=port, username=f"{address}.rig1",
                             algorithm="scrypt")
        task = asyncio.create_task(miner.run())
        try:
            await until(lambda: engine.counters()["connections"] == 1, "the miner's session")
            await wait_for_height(net, start + 3)
        finally:
            miner.stop()
            await asyncio.wait_for(task, 60)
        await until(lambda: engine.counters()["connections"] == 0, "the miner to leave")
        await until(lambda: engine.counters()["blocks"]["submitted"]
                    == engine.counters()["blocks"]["accepted"]
                    + engine.counters()["blocks"]["refused"], "block verdicts")
        counted = engine.counters()
        assert miner.submitted == miner.accepted + miner.rejected > 0
        assert counted["shares"]["accepted"] == miner.accepted
        reasons = {20: "other", 21: "stale", 22: "duplicate", 23: "low_difficulty",
                   24: "unauthorized", 25: "not_subscribed"}
        expected_rejects = dict.fromkeys(reasons.values(), 0)
        for code, count in miner.reject_reasons.items():
            expected_rejects[reasons[code]] += count
        assert counted["shares"]["rejected"] == expected_rejects
        # The chain says which blocks the pool made: its tag in the coinbase.
        end = node.rpc("getblockcount")
        ours = sum(POOL_TAG.encode().hex() in block_at(net, h)["tx"][0]["vin"][0]["coinbase"]
                   for h in range(start + 1, end + 1))
        blocks = counted["blocks"]
        assert blocks["accepted"] == ours >= 3, (blocks, ours)
        assert blocks["submitted"] == blocks["accepted"] + blocks["refused"]

        # 2. One share of each bad kind from a bare client.
        lonely = await RawClient.connect(port)
        client = await RawClient.connect(port)
        try:
            await expect_error(lonely, [f"{address}.x", "00", "00000000", "00000000",
                                        "00000000"], 25)
            subscribed = await client.call("mining.subscribe", ["counters-test"])
            _, extranonce1_hex, extranonce2_size = subscribed["result"]
            extranonce1 = bytes.fromhex(extranonce1_hex)
            worker = f"{address}.bad"
            assert (await client.call("mining.authorize", [worker, "x"]))["result"] is True
            difficulty = (await client.wait_notification("mining.set_difficulty"))["params"][0]
            notify = await client.wait_notification("mining.notify", timeout=15)
            await until(lambda: engine.counters()["connections"] == 2, "two sessions")
            en2 = bytes(extranonce2_size)
            await expect_error(client, submit_params(f"{address}.other", notify, en2, 0), 24)
            unknown = submit_params(worker, notify, en2, 0)
            unknown[1] = "deadbeef" if notify["params"][0] != "deadbeef" else "cafebabe"
            await expect_error(client, unknown, 20)
            nonce = losing_nonce(notify, extranonce1, en2, SCRYPT.difficulty_to_target(
                float(difficulty)))
            losing = submit_params(worker, notify, en2, nonce)
            await expect_error(client, losing, 23)
            await expect_error(client, losing, 22)
            # A block the daemon mines itself retires the job the client holds.
            node.rpc("generatetoaddress", 1, address)
            await until(lambda: engine.jobs.retired_recently(notify["params"][0]),
                        "the job to be retired")
            await expect_error(client, submit_params(worker, notify, bytes([1]) + en2[1:],
                                                     1), 21)
            after = engine.counters()
            assert after["connections"] == 2
        finally:
            await lonely.close()
            await client.close()

        for reason, sent in (("not_subscribed", 1), ("unauthorized", 1), ("other", 1),
                             ("low_difficulty", 1), ("duplicate", 1), ("stale", 1)):
            expected_rejects[reason] += sent
        assert after["shares"]["rejected"] == expected_rejects
        assert after["shares"]["accepted"] == miner.accepted
        assert after["blocks"] == blocks

        # 3. The status file carries the same counters, and the loop's lateness.
        public = tmp_path / "web" / engine.config.coin.prefix
        public.mkdir(parents=True)
        writer = PublicStatusWriter(config=engine.config, database=None,  # type: ignore[arg-type]
                                    engine=engine, directory=public,
                                    services=engine.supervisor.states)
        document = writer.document(datetime.now(UTC))
        assert document["counters"]["shares"] == after["shares"]
        lag = document["counters"]["loop_lag"]
        # Measured since the engine started (its accuracy: tests/unit/test_looplag.py).
        assert lag["samples"] > 0 and lag["window_seconds"] == 60
        assert 0 <= lag["p99_ms"] <= lag["max_ms"]

    # 4. The file as the engine wrote it, through the web's reader, as metrics.
    writer.write(document)
    exposition = generate_latest(registry_for(StatusReader(tmp_path))).decode()
    samples = {(s.name, s.labels.get("result"), s.labels.get("reason")): s.value
               for family in text_string_to_metric_families(exposition)
               for s in family.samples if s.name == "multipool_shares_total"}
    assert samples.pop(("multipool_shares_total", "accepted", "")) == miner.accepted
    assert {reason: value for (_, _, reason), value in samples.items()} == expected_rejects


async def test_composed_engine_publishes_counters_and_totals(net: RegtestNetwork,
                                                             tmp_path: Path):
    """The engine as `pool serve` composes it (engine.run_pool, SQLite): its status.json
    carries the counters and the database's totals, which the chain confirms."""
    node = net.nodes[0]
    address, _ = pool_address(net)
    public = tmp_path / "web" / "ltc"
    public.mkdir(parents=True)
    status_file = public / "status.json"
    port = free_port()
    config = regtest_coin_config(node, address=address, port=port, difficulty=2e-5,
                                 pool_tag=TAG, database=f"sqlite:///{tmp_path / 'pool.db'}",
                                 public_dir=str(public), state_dir=str(tmp_path))
    pool = asyncio.create_task(run_pool(config, intervals=ServiceIntervals(
        blocks=0.5, stats=1.0, status=0.5)))
    miner = StratumMiner(host="127.0.0.1", port=port, username=f"{address}.rig",
                         algorithm="scrypt")
    miner_task: asyncio.Task[None] | None = None
    try:
        await until(lambda: (read_json(status_file) or {}).get("stratum", {}).get("open")
                    is True, "the pool's stratum open", timeout=90)
        start = node.rpc("getblockcount")
        miner_task = asyncio.create_task(miner.run())
        await wait_for_height(net, start + 3)
        miner.stop()
        await asyncio.wait_for(miner_task, 60)

        def settled(document: dict[str, Any] | None) -> bool:
            if document is None or document["totals"] is None:
                return False
            counted = document["counters"]
            blocks = counted["blocks"]
            return (counted["connections"] == 0
                    and counted["shares"]["accepted"] == miner.accepted
                    and blocks["submitted"] == blocks["accepted"] + blocks["refused"]
                    and document["totals"]["blocks"]["pending"] == blocks["accepted"])
        try:
            await until(lambda: settled(read_json(status_file)),
                        "status.json with every block and share", timeout=60)
        except AssertionError:
            last = read_json(status_file) or {}
            raise AssertionError(f"miner accepted {miner.accepted}; last status: "
                                 f"{last.get('counters')} {last.get('totals')}") from None
        # A block found by the last shares may still be on its way to the daemon: the
        # figures must hold over two more status files (0.5 s apart).
        document = read_json(status_file)
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, f"the figures did not settle: {document}"
            await asyncio.sleep(1.2)
            again = read_json(status_file)
            if (again is not None and document is not None and settled(again)
                    and again["counters"]["blocks"] == document["counters"]["blocks"]):
                break
            document = again
        # Every block submitted has its verdict: the chain holds all of the pool's.
        end = node.rpc("getblockcount")
        ours = sum(TAG.encode().hex() in block_at(net, h)["tx"][0]["vin"][0]["coinbase"]
                   for h in range(start + 1, end + 1))
        assert ours >= 3
        # The network's figures are the daemon's at this tip (no block since).
        mining = node.rpc("getmininginfo")
        assert mining["networkhashps"] > 0
        assert document["network"] == {
            "hashrate": pytest.approx(mining["networkhashps"], rel=1e-9),
            "difficulty": pytest.approx(mining["difficulty"], rel=1e-9)}
    finally:
        miner.stop()
        if miner_task is not None:
            await asyncio.wait({miner_task}, timeout=30)
        pool.cancel()
        _, running = await asyncio.wait({pool}, timeout=60)
        assert not running, "the pool did not stop"
    assert document["counters"]["blocks"]["accepted"] == ours
    assert document["totals"]["blocks"] == {"candidate": 0, "pending": ours,
                                            "confirmed": 0, "orphaned": 0}
    assert all(v["batches"] == 0 for v in document["totals"]["payments"].values())
    # And so in the metrics, through the web's reader.
    exposition = generate_latest(registry_for(StatusReader(tmp_path))).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(exposition)
               for s in family.samples}
    labels = (("coin", config.coin.name), ("pool", "ltc"))
    assert samples[("multipool_blocks", (*labels, ("status", "pending")))] == ours
    assert samples[("multipool_block_verdicts_total", (*labels, ("verdict", "accepted")))] \
        == ours
    assert samples[("multipool_shares_total", (*labels, ("reason", ""),
                                               ("result", "accepted")))] == miner.accepted
    assert samples[("multipool_network_hashrate_hashes_per_second", labels)] == \
        pytest.approx(mining["networkhashps"], rel=1e-9)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
