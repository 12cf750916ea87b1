"""The CPU test miner against a scripted fake stratum pool.

The fake pool checks every share on its own, with hashlib and struct only: the header it
rebuilds from the submit, the hash and the share target owe nothing to multipool's code.
Jobs carry the header fields of Bitcoin block 125552 (the classic hashing example) with
the test's own coinbase and branch, so only the merkle root differs from the real block.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from multipool.chain.pow import ALGORITHMS
from multipool.cli import miner_cmd
from multipool.miner import RequestRefused, StratumMiner, deposit_bits, find_nonce

# Bitcoin block 125552.
VERSION = 1
PREV_HUM = "00000000000008a3a41b85b8b29ad444def299fee21793cd8b9e567eab02cd81"
ROOT_HUM = "2b12fcf1b09288fcaff797d71e950e71ae42b91e8bdb2304758dfcffc2b620e3"
NTIME = 1305998791
BITS = 0x1A44B9F2
NONCE = 2504433986
HASH_HUM = "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d"

USERNAME = "1BitcoinEaterAddressDontSendf59kuE.rig1"
DIFF1 = {"sha256d": 0xFFFF << 208, "scrypt": 0xFFFF << 224}
# A share in about 256 sha256d hashes: a 4096-nonce batch finds a dozen or so.
EASY_SHA = 2.0**-24

# A coinbase shaped like a real one (BIP34 height push, tag, one P2PKH output); the
# extranonce goes between coinb1 and coinb2.
COINB1 = ("01000000" "01" + "00" * 32 + "ffffffff" "17" "0370ea01")
COINB2 = ("2f6d756c7469706f6f6c2f" "ffffffff" "01" "00f2052a01000000"
          "19" "76a914" + "11" * 20 + "88ac" "00000000")


def dsha(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


BRANCH = [dsha(b"tx one").hex(), dsha(b"tx two").hex()]


def compact_target(bits: int) -> int:
    return (bits & 0xFFFFFF) << (8 * ((bits >> 24) - 3))


def stratum_prevhash(prev_hum: str) -> str:
    le = bytes.fromhex(prev_hum)[::-1]
    return b"".join(le[i:i + 4][::-1] for i in range(0, 32, 4)).hex()


def header_bytes(version: int, prev_hum: str, root_le: bytes, ntime: int, bits: int,
                 nonce: int) -> bytes:
    return struct.pack("<I32s32sIII", version, bytes.fromhex(prev_hum)[::-1], root_le,
                       ntime, bits, nonce)


def pow_int(algorithm: str, header: bytes) -> int:
    if algorithm == "sha256d":
        digest = dsha(header)
    else:
        digest = hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)
    return int.from_bytes(digest, "little")


@dataclass
class JobSpec:
    job_id: str
    version: int = VERSION
    prev_hum: str = PREV_HUM
    bits: int = BITS
    ntime: int = NTIME
    coinb1: str = COINB1
    coinb2: str = COINB2
    branch: list[str] = field(default_factory=lambda: list(BRANCH))
    # Filled in by FakePool.notify: what was in force when the job went out.
    difficulty: float = 1.0
    extranonce1: str = ""
    extranonce2_size: int = 0

    def params(self, clean: bool) -> list[Any]:
        return [self.job_id, stratum_prevhash(self.prev_hum), self.coinb1, self.coinb2,
                self.branch, f"{self.version:08x}", f"{self.bits:08x}",
                f"{self.ntime:08x}", clean]


@dataclass
class Share:
    params: list[Any]
    job: JobSpec
    version: int
    hash_int: int
    meets_share_target: bool
    meets_network_target: bool


class FakePool:
    """One-connection scripted stratum pool. ``on_authorized`` runs after the authorize
    reply (default: send the difficulty and job "a1"); ``on_submit`` after each checked
    share; ``replies`` answer the submits in order (then true)."""

    def __init__(self, *, algorithm: str = "sha256d", difficulty: float = EASY_SHA,
                 extranonce1: str = "f000000d", extranonce2_size: int = 4,
                 grant_mask: str | None = None, authorize_error: list[Any] | None = None,
                 replies: list[Any] | None = None,
                 on_authorized: Callable[[FakePool], Awaitable[None]] | None = None,
                 on_submit: Callable[[FakePool, Share], Awaitable[None]] | None = None,
                 on_extranonce_subscribe: Callable[[FakePool], Awaitable[None]] | None = None):
        self.algorithm = algorithm
        self.difficulty = difficulty
        self.sent_difficulty: float | None = None
        self.extranonce1 = extranonce1
        self.extranonce2_size = extranonce2_size
        self.grant_mask = grant_mask
        self.version_mask = 0
        self.authorize_error = authorize_error
        self.replies = list(replies or [])
        self.on_authorized = on_authorized or FakePool.send_default_job
        self.on_submit = on_submit
        self.on_extranonce_subscribe = on_extranonce_subscribe
        self.received: list[dict[str, Any]] = []
        self.shares: list[Share] = []
        self.jobs: dict[str, JobSpec] = {}
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> FakePool:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def __aenter__(self) -> FakePool:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def miner(self, **kwargs: Any) -> StratumMiner:
        kwargs.setdefault("algorithm", self.algorithm)
        return StratumMiner(host="127.0.0.1", port=self.port, username=USERNAME, **kwargs)

    # -- sending -----------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.write(json.dumps(message).encode() + b"\n")
        await self.writer.drain()

    async def notify(self, method: str, params: list[Any]) -> None:
        await self.send({"id": None, "method": method, "params": params})

    async def set_difficulty(self, difficulty: float) -> None:
        self.difficulty = difficulty
        await self.notify("mining.set_difficulty", [difficulty])
        self.sent_difficulty = difficulty

    async def send_job(self, job: JobSpec, *, clean: bool) -> JobSpec:
        """Send a job; it is mined at the difficulty and extranonce last sent."""
        job = replace(job, difficulty=self.sent_difficulty or 1.0,
                      extranonce1=self.extranonce1, extranonce2_size=self.extranonce2_size)
        self.jobs[job.job_id] = job
        await self.notify("mining.notify", job.params(clean))
        return job

    async def send_default_job(self) -> None:
        await self.set_difficulty(self.difficulty)
        await self.send_job(JobSpec("a1"), clean=True)

    # -- receiving ---------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        self.writer = writer
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                message = json.loads(line)
                self.received.append(message)
                await self.dispatch(message)
        writer.close()

    async def reply(self, msg_id: Any, result: Any, error: Any = None) -> None:
        await self.send({"id": msg_id, "result": result, "error": error})

    async def dispatch(self, message: dict[str, Any]) -> None:
        method, params, msg_id = message["method"], message["params"], message["id"]
        if method == "mining.configure":
            if self.grant_mask is None:
                await self.reply(msg_id, {"version-rolling": False})
            else:
                self.version_mask = int(self.grant_mask, 16)
                await self.reply(msg_id, {"version-rolling": True,
                                          "version-rolling.mask": self.grant_mask})
        elif method == "mining.subscribe":
            await self.reply(msg_id, [[["mining.set_difficulty", "1"], ["mining.notify", "1"]],
                                      self.extranonce1, self.extranonce2_size])
        elif method == "mining.authorize":
            if self.authorize_error is not None:
                await self.reply(msg_id, None, self.authorize_error)
                return
            await self.reply(msg_id, True)
            await self.on_authorized(self)
        elif method == "mining.extranonce.subscribe":
            await self.reply(msg_id, True)
            if self.on_extranonce_subscribe is not None:
                await self.on_extranonce_subscribe(self)
        elif method == "mining.submit":
            share = self.check(params)
            self.shares.append(share)
            if self.on_submit is not None:
                await self.on_submit(self, share)
            result = self.replies.pop(0) if self.replies else True
            if isinstance(result, list | dict):  # an error
                await self.reply(msg_id, None, result)
            else:
                await self.reply(msg_id, result)
        else:
            await self.reply(msg_id, None, [20, "unknown method", None])

    def check(self, params: list[Any]) -> Share:
        """Rebuild the share's header from the submit and the job, and hash it."""
        assert len(params) in (5, 6), params
        _, job_id, extranonce2, ntime, nonce = params[:5]
        job = self.jobs[job_id]
        assert len(extranonce2) == 2 * job.extranonce2_size, (extranonce2, job)
        assert len(ntime) == 8 and len(nonce) == 8
        version = job.version
        if len(params) == 6:
            assert len(params[5]) == 8
            version = (version & ~self.version_mask) | int(params[5], 16)
        root = dsha(bytes.fromhex(job.coinb1 + job.extranonce1 + extranonce2 + job.coinb2))
        for step in job.branch:
            root = dsha(root + bytes.fromhex(step))
        header = header_bytes(version, job.prev_hum, root, int(ntime, 16), job.bits,
                              int(nonce, 16))
        value = pow_int(self.algorithm, header)
        share_target = int(Fraction(DIFF1[self.algorithm]) / Fraction(job.difficulty))
        return Share(params, job, version, value, value <= share_target,
                     value <= compact_target(job.bits))

    def methods(self) -> list[str]:
        return [m["method"] for m in self.received]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def mining(miner: StratumMiner):
    task = asyncio.create_task(miner.run())
    try:
        yield task
    finally:
        miner.stop()
        await asyncio.wait_for(task, 5)


# -- pure parts ----------------------------------------------------------------------


def test_real_block_header_and_find_nonce():
    header = header_bytes(VERSION, PREV_HUM, bytes.fromhex(ROOT_HUM)[::-1], NTIME, BITS, NONCE)
    assert dsha(header)[::-1].hex() == HASH_HUM  # the test's own hashing is right
    sha256d = ALGORITHMS["sha256d"]
    hit = find_nonce(sha256d, header[:76], NONCE - 700, 1000, compact_target(BITS))
    assert hit is not None and (hit[0], hit[1][::-1].hex()) == (NONCE, HASH_HUM)
    assert find_nonce(sha256d, header[:76], NONCE + 1, 1000, compact_target(BITS)) is None


def test_find_nonce_stops_at_the_end_of_the_nonce_space_and_hashes_scrypt_right():
    header76 = header_bytes(VERSION, PREV_HUM, bytes(32), NTIME, BITS, 0)[:76]
    scrypt = ALGORITHMS["scrypt"]
    hit = find_nonce(scrypt, header76, 2**32 - 1, 10, 2**256 - 1)
    assert hit is not None and hit[0] == 2**32 - 1
    assert int.from_bytes(hit[1], "little") == pow_int("scrypt", header76 + b"\xff" * 4)
    assert find_nonce(scrypt, header76, 2**32 - 3, 10, 0) is None


def test_deposit_bits_walks_the_mask():
    mask = 0x1FFFE000
    assert deposit_bits(0, mask) == 0
    assert deposit_bits(1, mask) == 0x2000
    assert deposit_bits(0xFFFF, mask) == mask
    assert deposit_bits(0b11, 0b1010_0000) == 0b1010_0000
    values = {deposit_bits(i, 0x00F0F000) for i in range(256)}
    assert len(values) == 256 and all(v & ~0x00F0F000 == 0 for v in values)


# -- against the fake pool -----------------------------------------------------------


async def test_sha256d_shares_on_a_real_block_job_are_valid():
    async with FakePool() as pool:
        miner = pool.miner(max_shares=8)
        await asyncio.wait_for(miner.run(), 10)
    assert pool.methods()[:3] == ["mining.subscribe", "mining.authorize",
                                  "mining.extranonce.subscribe"]
    assert pool.received[0]["params"] == ["multipool-miner/0.1"]
    assert pool.received[1]["params"] == [USERNAME, "x"]
    assert len(pool.shares) == 8
    for share in pool.shares:
        assert share.meets_share_target, share
        assert not share.meets_network_target
        user, job_id, extranonce2, ntime, nonce = share.params
        assert (user, job_id, ntime) == (USERNAME, "a1", f"{NTIME:08x}")
        assert len(extranonce2) == 8 and len(nonce) == 8
    # No share twice.
    assert len({tuple(s.params) for s in pool.shares}) == 8
    assert (miner.submitted, miner.accepted, miner.rejected) == (8, 8, 0)
    assert miner.blocks_candidates == 0
    assert miner.hashes >= 8 and miner.hashrate() > 0
    assert not miner.connected


async def regtest_job(pool: FakePool) -> None:
    await pool.set_difficulty(EASY_SHA)
    await pool.send_job(JobSpec("r1", bits=0x207FFFFF), clean=True)


async def test_block_candidates_wait_for_the_next_job():
    async def next_block(pool: FakePool, share: Share) -> None:
        if share.meets_network_target:
            await pool.send_job(JobSpec(f"r{len(pool.jobs) + 1}", bits=0x207FFFFF),
                                clean=True)

    async with FakePool(on_authorized=regtest_job, on_submit=next_block) as pool:
        miner = pool.miner(max_shares=5)
        await asyncio.wait_for(miner.run(), 5)
    assert len(pool.shares) == 5
    assert all(s.meets_share_target and s.meets_network_target for s in pool.shares)
    assert miner.blocks_candidates == 5
    # One block per job: after each the miner waited for the next job.
    assert [s.job.job_id for s in pool.shares] == ["r1", "r2", "r3", "r4", "r5"]


async def test_block_candidate_without_a_new_job_resumes_after_block_wait():
    async with FakePool(on_authorized=regtest_job) as pool:
        miner = pool.miner(max_shares=3)
        miner.BLOCK_WAIT = 0.1
        began = time.monotonic()
        await asyncio.wait_for(miner.run(), 5)
    assert time.monotonic() - began >= 0.2
    assert [s.job.job_id for s in pool.shares] == ["r1"] * 3
    assert len({tuple(s.params) for s in pool.shares}) == 3
    assert miner.blocks_candidates == 3


async def test_switches_job_on_clean_jobs_and_difficulty_applies_to_next_job():
    async def on_submit(pool: FakePool, share: Share) -> None:
        ids = [s.job.job_id for s in pool.shares]
        if share.job.job_id == "a1" and "b2" not in pool.jobs:
            # Harder difficulty for the next job; then a clean job.
            await pool.set_difficulty(EASY_SHA * 4)
            await pool.send_job(JobSpec("b2", ntime=NTIME + 30), clean=True)
        elif share.job.job_id == "b2" and ids.count("b2") == 3:
            await pool.set_difficulty(EASY_SHA * 2)
            await pool.send_job(JobSpec("c3", ntime=NTIME + 60, branch=[]), clean=False)

    async with FakePool(on_submit=on_submit) as pool:
        miner = pool.miner()
        async with mining(miner):
            await wait_until(lambda: sum(s.job.job_id == "c3" for s in pool.shares) >= 3)
    ids = [s.job.job_id for s in pool.shares]
    assert all(s.meets_share_target for s in pool.shares)
    assert pool.jobs["a1"].difficulty == EASY_SHA
    assert pool.jobs["b2"].difficulty == EASY_SHA * 4
    assert pool.jobs["c3"].difficulty == EASY_SHA * 2
    first_b, first_c = ids.index("b2"), ids.index("c3")
    # Once a share of the new job came, none of an older job follows.
    assert "a1" not in ids[first_b:]
    assert "b2" not in ids[first_c:]
    assert [s.params[3] for s in pool.shares[first_c:]] == \
        [f"{NTIME + 60:08x}"] * (len(ids) - first_c)
    assert miner.job is not None and miner.job.job_id == "c3"


async def test_version_rolling_stays_within_the_granted_mask():
    granted = 0x0007E000  # narrower than the 1fffe000 the miner asks for

    async def job(pool: FakePool) -> None:
        await pool.set_difficulty(EASY_SHA)
        await pool.send_job(JobSpec("v1", version=0x20000000 | 0x4000), clean=True)

    async with FakePool(grant_mask=f"{granted:08x}", on_authorized=job) as pool:
        miner = pool.miner(version_rolling=True, max_shares=60)
        await asyncio.wait_for(miner.run(), 10)
    assert pool.methods()[:4] == ["mining.configure", "mining.subscribe", "mining.authorize",
                                 "mining.extranonce.subscribe"]
    assert pool.received[0]["params"] == [
        ["version-rolling"],
        {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2}]
    assert len(pool.shares) == 60
    rolled = set()
    for share in pool.shares:
        assert len(share.params) == 6
        bits = int(share.params[5], 16)
        assert bits & ~granted == 0, share.params
        assert share.version & ~granted == 0x20000000
        assert share.meets_share_target
        rolled.add(bits)
    assert len(rolled) > 1
    assert len({tuple(s.params) for s in pool.shares}) == 60


async def test_scrypt_at_tiny_difficulty_without_rolling_when_refused():
    async with FakePool(algorithm="scrypt", difficulty=0.0001) as pool:
        miner = pool.miner(version_rolling=True, max_shares=3)
        await asyncio.wait_for(miner.run(), 10)
    assert pool.methods()[0] == "mining.configure"
    assert len(pool.shares) == 3
    for share in pool.shares:
        assert len(share.params) == 5  # the pool refused rolling: no version bits
        assert share.meets_share_target
    assert miner.accepted == 3


async def test_rejects_are_counted_by_code(caplog: pytest.LogCaptureFixture):
    async def chatty(pool: FakePool) -> None:
        await pool.notify("client.show_message", ["maintenance at noon"])
        await pool.notify("client.reconnect", ["other.example", 3333, 0])
        await pool.send_default_job()

    replies = [True, [23, "low difficulty share", None], [21, "job not found", None],
               [23, "low difficulty share", None], [22, "duplicate share", None], False,
               {"code": 24, "message": "unauthorized worker"}]
    caplog.set_level(logging.INFO, logger="multipool.miner")
    async with FakePool(replies=replies, on_authorized=chatty) as pool:
        miner = pool.miner(max_shares=8)
        await asyncio.wait_for(miner.run(), 10)
    assert (miner.accepted, miner.rejected) == (2, 6)
    assert miner.reject_reasons == {23: 2, 21: 1, 22: 1, 20: 1, 24: 1}
    assert miner.summary()["reject_reasons"] == {"20": 1, "21": 1, "22": 1, "23": 2, "24": 1}
    assert "maintenance at noon" in caplog.text
    assert "other.example" in caplog.text


async def test_set_extranonce_applies_to_the_next_job():
    async def new_extranonce(pool: FakePool) -> None:
        assert "mining.extranonce.subscribe" in pool.methods()
        pool.extranonce1 = "cafebabe01"
        pool.extranonce2_size = 2
        await pool.notify("mining.set_extranonce", ["cafebabe01", 2])
        await pool.send_job(JobSpec("e2"), clean=True)

    async with FakePool(on_extranonce_subscribe=new_extranonce) as pool:
        miner = pool.miner()
        async with mining(miner):
            await wait_until(lambda: sum(s.job.job_id == "e2" for s in pool.shares) >= 3)
    assert all(s.meets_share_target for s in pool.shares)
    for share in pool.shares:
        assert len(share.params[2]) == (4 if share.job.job_id == "e2" else 8)


async def test_authorize_error_is_raised_with_its_code():
    async with FakePool(authorize_error=[24, "invalid payout address", None]) as pool:
        miner = pool.miner()
        with pytest.raises(RequestRefused) as info:
            await miner.connect()
        assert info.value.code == 24 and "invalid payout address" in str(info.value)
        assert not miner.connected
        with pytest.raises(RequestRefused):
            await pool.miner().run()


async def test_connect_alone_returns_the_handshake():
    async with FakePool(grant_mask="1fffe000", extranonce2_size=8) as pool:
        miner = pool.miner(version_rolling=True)
        handshake = await miner.connect()
        await miner.close()
    assert handshake.extranonce1 == bytes.fromhex("f000000d")
    assert handshake.extranonce2_size == 8
    assert handshake.version_mask == 0x1FFFE000
    assert handshake.subscriptions[1][0] == "mining.notify"


async def test_hashrate_limit_caps_hashing():
    async def hard_job(pool: FakePool) -> None:
        await pool.set_difficulty(1.0)  # no share in the test's lifetime
        await pool.send_job(JobSpec("h1"), clean=True)

    limit = 20_000.0
    async with FakePool(on_authorized=hard_job) as pool:
        miner = pool.miner(hashrate_limit=limit)
        async with mining(miner):
            await wait_until(lambda: miner.hashes > 0)
            began, hashes = time.monotonic(), miner.hashes
            await asyncio.sleep(0.6)
            elapsed, done = time.monotonic() - began, miner.hashes - hashes
    assert 0 < done <= limit * elapsed + 2 * miner.batch_size
    assert miner.batch_size == 1000


async def test_run_raises_when_the_pool_hangs_up():
    async def hang_up(pool: FakePool, share: Share) -> None:
        assert pool.writer is not None
        pool.writer.close()

    async with FakePool(on_submit=hang_up) as pool:
        miner = pool.miner()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(miner.run(), 10)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="algorithm"):
        StratumMiner(host="h", port=1, username="u", algorithm="x11")
    with pytest.raises(ValueError, match="hashrate_limit"):
        StratumMiner(host="h", port=1, username="u", hashrate_limit=0)


# -- the command ---------------------------------------------------------------------


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    miner_cmd.register(app)
    return app


@pytest.mark.parametrize("url", ["http://127.0.0.1:3333", "stratum+tcp://127.0.0.1",
                                 "stratum+tcp://:3333", "stratum+tcp://host:99999",
                                 "127.0.0.1:3333"])
def test_cli_names_a_malformed_url(url: str):
    result = CliRunner().invoke(cli_app(), ["miner", "--url", url, "--user", USERNAME])
    assert result.exit_code == 2
    words = " ".join(result.output.replace("│", " ").split())
    assert f"Invalid value for '--url': {url!r}" in words


def test_parse_stratum_url():
    assert miner_cmd.parse_stratum_url("stratum+tcp://pool.example:3333") == \
        ("pool.example", 3333)
    assert miner_cmd.parse_stratum_url("stratum+tcp://[::1]:3333/") == ("::1", 3333)


def test_cli_mines_and_prints_a_json_summary():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        pool = asyncio.run_coroutine_threadsafe(FakePool().start(), loop).result(5)
        result = CliRunner().invoke(cli_app(), [
            "miner", "-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", USERNAME,
            "-a", "sha256d", "--shares", "3", "--json"])
        asyncio.run_coroutine_threadsafe(pool.stop(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["accepted"] == 3 and summary["rejected"] == 0
    assert summary["username"] == USERNAME and summary["error"] is None
    assert len(pool.shares) == 3 and all(s.meets_share_target for s in pool.shares)


def test_cli_reports_an_unreachable_pool():
    loop = asyncio.new_event_loop()
    try:
        server = loop.run_until_complete(asyncio.start_server(lambda r, w: None,
                                                              "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()
    result = CliRunner().invoke(cli_app(), ["miner", "-o", f"stratum+tcp://127.0.0.1:{port}",
                                            "-u", USERNAME, "--json"])
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.output
