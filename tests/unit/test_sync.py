"""The sync gate: the daemon's sync state read, judged, and turned into open and closed
stratum ports, with a scripted daemon (the functional test uses the real litecoind)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from multipool.chain.rpc import DaemonError
from multipool.chain.sync import Gate, SyncGate, SyncState, SyncWatcher
from multipool.config import parse_coin_config
from multipool.devnet import free_port
from multipool.engine import PoolEngine
from tests.support.fake_daemon import FakeTemplateDaemon
from tests.support.stratum_client import RawClient

REGTEST_BECH32 = "rltc1q6hnhkmvc0ls0vcjahd9wcau8x37s03mnaez28g"


def state(blocks: int = 100, headers: int | None = None, peers: int = 8,
          ibd: bool = False, progress: float = 1.0) -> SyncState:
    return SyncState(blocks=blocks, headers=blocks if headers is None else headers,
                     peers=peers, initial_download=ibd, verification_progress=progress)


SYNCED = state()
BEHIND = state(peers=0)


# -- SyncState -------------------------------------------------------------------------

def test_synced_daemon_has_no_reason():
    assert SYNCED.synced and SYNCED.reason is None


@pytest.mark.parametrize(("reading", "reason"), [
    (state(ibd=True, progress=0.4213), "initial block download 42%"),
    (state(blocks=100, headers=120), "headers 120 > blocks 100"),
    (state(blocks=100, headers=103), "headers 103 > blocks 100"),
    (state(peers=0), "no peers"),
    # Initial block download is the first thing people need to know.
    (state(blocks=5, headers=900, peers=0, ibd=True, progress=0.001),
     "initial block download 0%"),
])
def test_behind_daemon_says_why(reading: SyncState, reason: str):
    assert not reading.synced
    assert reading.reason == reason


@pytest.mark.parametrize("lag", [1, 2])
def test_headers_a_block_or_two_ahead_are_tolerated(lag: int):
    # While a new block is downloaded and connected, headers run ahead for a moment.
    assert state(blocks=100, headers=100 + lag).synced


def test_state_from_rpc_answers():
    chain_info = {"chain": "regtest", "blocks": 431, "headers": 435,
                  "bestblockhash": "ab" * 32, "initialblockdownload": False,
                  "verificationprogress": 0.9999}
    reading = SyncState.from_rpc(chain_info, 3)
    assert (reading.blocks, reading.headers, reading.peers) == (431, 435, 3)
    assert reading.best_hash == "ab" * 32
    assert reading.reason == "headers 435 > blocks 431"
    assert SyncState.from_rpc(chain_info, 3, max_header_lag=4).synced


def test_daemons_without_an_initial_download_field_are_judged_by_progress():
    # getblockchaininfo of a daemon forked before Bitcoin Core 0.16.
    old = {"chain": "main", "blocks": 5_000_000, "headers": 5_000_000,
           "verificationprogress": 0.99999871}
    assert SyncState.from_rpc(old, 8).synced
    catching_up = {**old, "blocks": 2_000_000, "verificationprogress": 0.3712}
    reading = SyncState.from_rpc(catching_up, 8)
    assert reading.reason == "initial block download 37%"


def test_unusable_rpc_answer_is_a_reading_of_a_daemon_behind():
    reading = SyncState.from_rpc({"headers": 1}, 3)
    assert not reading.synced
    assert reading.error is not None and "blocks" in reading.error
    assert reading.reason == reading.error


# -- SyncGate --------------------------------------------------------------------------

def test_gate_opens_on_first_synced_reading_once_work_is_ready():
    gate = SyncGate()
    assert gate.update(BEHIND) is None
    assert gate.update(SYNCED, ready=False) is None  # no job yet: stay closed
    assert gate.update(SYNCED, ready=True) is Gate.OPEN
    gate.opened()
    assert gate.update(SYNCED) is None  # already open: nothing to do


def test_gate_closes_only_after_two_readings_behind_in_a_row():
    gate = SyncGate()
    gate.opened()
    assert gate.update(BEHIND) is None
    assert gate.update(BEHIND) is Gate.CLOSE
    gate.closed()
    assert not gate.is_open
    assert gate.update(BEHIND) is None  # closed ports stay closed, no second CLOSE
    assert gate.update(SYNCED) is Gate.OPEN


def test_gate_does_not_flap_on_isolated_bad_readings():
    gate = SyncGate()
    gate.opened()
    for reading in [BEHIND, SYNCED, state(headers=110), SYNCED, BEHIND, SYNCED,
                    state(blocks=100, headers=101), state(blocks=100, headers=102)]:
        assert gate.update(reading) is None, reading


def test_gate_close_after_is_configurable():
    gate = SyncGate(close_after=3)
    gate.opened()
    assert [gate.update(BEHIND) for _ in range(3)] == [None, None, Gate.CLOSE]
    with pytest.raises(ValueError):
        SyncGate(close_after=0)


# -- SyncWatcher -----------------------------------------------------------------------

class SyncDaemon(FakeTemplateDaemon):
    """The template daemon with the sync RPCs and the block submission the engine needs.
    ``readings`` (blocks, headers, peers, ibd) are served one per getblockchaininfo call
    before the standing ``blocks``/``headers``/``peers``/``ibd`` values."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.peers = 8
        self.ibd = False
        self.lag = 0
        self.error: DaemonError | None = None
        self.delay = 0.0
        self.readings: list[tuple[int, int, int, bool]] = []
        self.calls = 0
        self._peers_now = self.peers

    async def getblockchaininfo(self) -> dict[str, Any]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        blocks, headers, peers, ibd = (self.readings.pop(0) if self.readings else
                                       (self.height - 1, self.height - 1 + self.lag,
                                        self.peers, self.ibd))
        self._peers_now = peers
        return {"chain": "regtest", "blocks": blocks, "headers": headers,
                "bestblockhash": self.prev, "initialblockdownload": ibd,
                "verificationprogress": 0.5 if ibd else 1.0}

    async def getconnectioncount(self) -> int:
        return self._peers_now

    async def submitblock(self, block_hex: str) -> str | None:
        return None

    async def getblockheader(self, hash_hex: str, verbose: bool = True) -> Any:
        return {"confirmations": 1}


async def test_watcher_reads_the_daemon():
    daemon = SyncDaemon()
    daemon.peers = 0
    reading = await SyncWatcher(daemon).read()
    assert reading.reason == "no peers"
    assert reading.best_hash == daemon.prev
    assert reading.blocks == daemon.height - 1


async def test_watcher_turns_errors_and_silence_into_readings_behind():
    daemon = SyncDaemon()
    daemon.error = DaemonError("Loading block index...", code=-28)
    reading = await SyncWatcher(daemon).read()
    assert not reading.synced and "Loading block index" in (reading.reason or "")
    daemon.error, daemon.delay = None, 5.0
    started = time.monotonic()
    reading = await SyncWatcher(daemon, answer_timeout=0.1).read()
    assert time.monotonic() - started < 2
    assert reading.reason == "daemon gave no answer in 0.1s"


async def test_watcher_sleep_ends_early_on_wake():
    watcher = SyncWatcher(SyncDaemon(), interval=30)
    asyncio.get_running_loop().call_later(0.05, watcher.wake)
    started = time.monotonic()
    await asyncio.wait_for(watcher.sleep(), 5)
    assert time.monotonic() - started < 2
    await watcher.read()  # a reading clears the wake: the next sleep is a full one
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(watcher.sleep(), 0.2)


# -- the engine ------------------------------------------------------------------------

INTERVAL = 0.05


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_engine(daemon: SyncDaemon, **kwargs: Any) -> AsyncIterator[PoolEngine]:
    port = free_port()
    config = parse_coin_config({
        "coin": {"name": "litecoin", "prefix": "ltc", "symbol": "LTC",
                 "algorithm": "scrypt", "network": "regtest"},
        "daemon": {"rpc_url": "http://127.0.0.1:1/", "rpc_user": "u", "rpc_password": "p"},
        "stratum": {"host": "127.0.0.1",
                    "ports": [{"port": port, "difficulty": 1e-6, "vardiff": False}]},
        "pool": {"address": REGTEST_BECH32},
    }, "sync test coin")
    engine = PoolEngine(config=config, daemon=daemon,  # type: ignore[arg-type]
                        sync_interval=INTERVAL, **kwargs)
    task = asyncio.create_task(engine.run())
    try:
        yield engine
    finally:
        task.cancel()
        _, running = await asyncio.wait({task}, timeout=10)
        assert not running, "the engine did not stop"
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def the_port(engine: PoolEngine) -> int:
    return engine.config.stratum.ports[0].port


async def ready_client(port: int) -> RawClient:
    client = await RawClient.connect(port)
    await client.call("mining.subscribe", ["test"])
    reply = await client.call("mining.authorize", [f"{REGTEST_BECH32}.rig", "x"])
    assert reply["result"] is True
    await client.wait_notification("mining.notify")
    return client


async def test_ports_stay_closed_until_the_daemon_is_synced(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="multipool.engine")
    daemon = SyncDaemon()
    daemon.ibd = True
    async with running_engine(daemon) as engine:
        await wait_until(lambda: daemon.calls >= 5)
        # The job is there (the fake daemon gives templates), the daemon is not synced.
        assert engine.jobs.current is not None
        assert not port_open(the_port(engine))
        assert not engine.stratum_open
        assert engine.sync_state is not None
        assert engine.sync_state.reason == "initial block download 50%"
        daemon.ibd, daemon.peers = False, 0
        await wait_until(lambda: engine.sync_state is not None
                         and engine.sync_state.reason == "no peers")
        assert not port_open(the_port(engine))
        daemon.peers = 3
        await wait_until(lambda: engine.stratum_open)
        assert port_open(the_port(engine))
        assert engine.sync_state is not None and engine.sync_state.synced
    messages = [r.getMessage() for r in caplog.records]
    # Logged once each, not on every reading.
    assert messages.count("daemon behind (initial block download 50%): stratum ports stay "
                          "closed until it is synced") == 1
    assert messages.count("daemon synced: opening stratum ports") == 1
    assert not any("closing stratum ports" in m for m in messages)


async def test_ports_close_and_miners_go_when_the_daemon_falls_behind(
        caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="multipool.engine")
    daemon = SyncDaemon()
    async with running_engine(daemon) as engine:
        await wait_until(lambda: engine.stratum_open)
        port = the_port(engine)
        client = await ready_client(port)
        daemon.lag = 20
        await wait_until(lambda: not engine.stratum_open)
        assert await client.closed(timeout=5), "the miner was not disconnected"
        assert not port_open(port)
        assert engine.server.sessions == {}
        assert engine.sync_state is not None
        assert engine.sync_state.reason == f"headers {daemon.height + 19} > blocks " \
                                           f"{daemon.height - 1}"
        # Caught up, on a new tip: the ports open with work on that tip.
        daemon.lag = 0
        daemon.new_block()
        await wait_until(lambda: engine.stratum_open)
        client = await ready_client(port)
        assert engine.jobs.current is not None
        assert engine.jobs.current.template.height == daemon.height
        await client.close()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("daemon synced: opening stratum ports") == 2
    closing = [m for m in messages if m.endswith("closing stratum ports")]
    assert closing == [f"daemon behind (headers {daemon.height + 18} > blocks "
                       f"{daemon.height - 2}): closing stratum ports"]


async def test_isolated_bad_readings_do_not_close_the_ports():
    daemon = SyncDaemon()
    async with running_engine(daemon) as engine:
        await wait_until(lambda: engine.stratum_open)
        client = await ready_client(the_port(engine))
        good = (daemon.height - 1, daemon.height - 1, 8, False)
        bad = (daemon.height - 1, daemon.height - 1, 0, False)
        one_ahead = (daemon.height - 1, daemon.height + 1, 8, False)
        daemon.readings = [bad, good, one_ahead, bad, good, bad, one_ahead, bad, good]
        calls = daemon.calls
        await wait_until(lambda: daemon.calls >= calls + 10)
        assert engine.stratum_open
        assert not await client.closed(timeout=0.1), "the miner was disconnected"
        assert port_open(the_port(engine))
        await client.close()


async def test_a_silent_daemon_closes_the_ports():
    daemon = SyncDaemon()
    async with running_engine(daemon, sync_timeout=0.1) as engine:
        await wait_until(lambda: engine.stratum_open)
        daemon.delay = 1.0
        await wait_until(lambda: not engine.stratum_open)
        assert engine.sync_state is not None
        assert engine.sync_state.reason == "daemon gave no answer in 0.1s"
        assert not port_open(the_port(engine))
        daemon.delay = 0.0
        await wait_until(lambda: engine.stratum_open)
