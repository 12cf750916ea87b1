"""The stratum server over real TCP connections, with a scripted template source.

The daemon is faked here (FakeTemplateDaemon) so each test controls the chain tip; the
functional tests run the same server against the real litecoind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass, replace

import pytest

from multipool.chain.pow import ALGORITHMS
from multipool.config import PortConfig, StratumSection
from multipool.errors import AddressError
from multipool.stratum.jobs import JobManager
from multipool.stratum.server import StratumServer
from multipool.stratum.session import SessionLimits
from multipool.stratum.sink import MemoryShareSink
from tests.support.fake_daemon import FakeTemplateDaemon
from tests.support.stratum_client import RawClient

GOOD = "goodaddress"
PAYOUT = bytes.fromhex("0014") + bytes(20)


def check_address(address: str) -> None:
    if not address.startswith("good"):
        raise AddressError(f"address {address!r} is not valid for this test coin")


@dataclass
class Pool:
    daemon: FakeTemplateDaemon
    sink: MemoryShareSink
    server: StratumServer
    jobs: JobManager
    port: int


async def start_pool(*, bits: str = "207fffff", difficulty: float = 1e-6,
                     limits: SessionLimits | None = None, tls: tuple[str, str] | None = None,
                     algorithm: str = "sha256d", hash_workers: int = 2, **stratum: object):
    daemon = FakeTemplateDaemon(bits=bits)
    sink = MemoryShareSink()
    config = StratumSection(
        host="127.0.0.1",
        ports=(PortConfig(port=0, difficulty=difficulty, vardiff=False,
                          min_difficulty=1e-9, max_difficulty=1e12, tls=tls is not None,
                          tls_cert=tls[0] if tls else None, tls_key=tls[1] if tls else None),),
        **stratum)  # type: ignore[arg-type]
    server: StratumServer
    jobs = JobManager(daemon=daemon, rules=("segwit",), payout_script=PAYOUT,
                      extranonce_size=4 + config.extranonce2_size, pool_tag=b"/test/",
                      on_job=lambda job: server.broadcast(job))
    server = StratumServer(config=config, algorithm=ALGORITHMS[algorithm], jobs=jobs,
                           sink=sink, submitter=daemon, check_address=check_address,
                           limits=limits, hash_workers=hash_workers)
    task = asyncio.create_task(jobs.run())
    await asyncio.wait_for(jobs.first_job.wait(), 5)
    await server.start()
    return Pool(daemon, sink, server, jobs, server.bound_ports()[0]), task


@pytest.fixture
async def pool():
    started, task = await start_pool()
    yield started
    task.cancel()
    await started.server.close()


async def ready_client(port: int, password: str = "x", worker: str = GOOD + ".rig1"):
    client = await RawClient.connect(port)
    sub = await client.call("mining.subscribe", ["test/1"])
    auth = await client.call("mining.authorize", [worker, password])
    assert auth["result"] is True, auth
    diff = await client.wait_notification("mining.set_difficulty")
    notify = await client.wait_notification("mining.notify")
    return client, sub["result"], diff["params"][0], notify["params"]


def build_header(notify: list, extranonce1: str, extranonce2: str, ntime: str,
                 nonce: int) -> tuple[bytes, bytes]:
    """Independent of the server's code: hashlib and struct only."""
    def dsha(b: bytes) -> bytes:
        return hashlib.sha256(hashlib.sha256(b).digest()).digest()

    _, prevhash, coinb1, coinb2, branch, version, nbits, _, _ = notify
    coinbase = bytes.fromhex(coinb1 + extranonce1 + extranonce2 + coinb2)
    root = dsha(coinbase)
    for step in branch:
        root = dsha(root + bytes.fromhex(step))
    prev = b"".join(bytes.fromhex(prevhash)[i:i + 4][::-1] for i in range(0, 32, 4))
    header = (struct.pack("<I", int(version, 16)) + prev + root
              + struct.pack("<III", int(ntime, 16), int(nbits, 16), nonce))
    return header, coinbase


def solve(notify: list, extranonce1: str, extranonce2: str, difficulty: float,
          *, want_valid: bool = True) -> tuple[str, int]:
    target = int(0xFFFF * 2**208 / difficulty)
    ntime = notify[7]
    for nonce in range(10_000_000):
        header, _ = build_header(notify, extranonce1, extranonce2, ntime, nonce)
        value = int.from_bytes(hashlib.sha256(hashlib.sha256(header).digest()).digest(),
                               "little")
        if (value <= target) == want_valid:
            return ntime, nonce
    raise AssertionError("no nonce found")


async def submit(client: RawClient, notify: list, en2: str, ntime: str, nonce: int,
                 worker: str = GOOD + ".rig1", extra: list | None = None) -> dict:
    return await client.call("mining.submit",
                             [worker, notify[0], en2, ntime, f"{nonce:08x}", *(extra or [])])


async def test_subscribe_gives_unique_extranonce1_and_sizes(pool: Pool):
    seen = set()
    for _ in range(5):
        client = await RawClient.connect(pool.port)
        reply = await client.call("mining.subscribe", [])
        subscriptions, extranonce1, en2_size = reply["result"]
        assert [s[0] for s in subscriptions] == ["mining.set_difficulty", "mining.notify"]
        assert len(bytes.fromhex(extranonce1)) == 4 and en2_size == 4
        seen.add(extranonce1)
        await client.close()
    assert len(seen) == 5


async def test_authorize_sends_difficulty_then_clean_job(pool: Pool):
    client, _, difficulty, notify = await ready_client(pool.port)
    assert difficulty == pytest.approx(1e-6)
    assert notify[8] is True and len(notify) == 9
    assert notify[6] == pool.daemon.bits
    await client.close()


async def test_valid_share_is_accepted_and_block_submitted_with_right_merkle_root(pool: Pool):
    client, (_, en1, _), difficulty, notify = await ready_client(pool.port)
    en2 = "00000001"
    ntime, nonce = solve(notify, en1, en2, difficulty)
    reply = await submit(client, notify, en2, ntime, nonce)
    assert reply["result"] is True and reply["error"] is None
    assert pool.sink.accepted == 1
    share = pool.sink.recent[-1]
    assert (share.address, share.worker, share.difficulty) == (GOOD, "rig1", difficulty)
    # With regtest bits every share this easy is a block too.
    for _ in range(50):
        if pool.daemon.submitted:
            break
        await asyncio.sleep(0.02)
    block, hash_hex = pool.daemon.submitted[0]
    header, coinbase = build_header(notify, en1, en2, ntime, nonce)
    assert block[:80] == header
    assert hashlib.sha256(hashlib.sha256(header).digest()).digest()[::-1].hex() == hash_hex
    coinbase_txid = hashlib.sha256(hashlib.sha256(coinbase).digest()).digest()
    assert block[36:68] == pool.daemon.expected_merkle_root(coinbase_txid)
    # 4 transactions: coinbase + 3; the coinbase carries the witness reserved value.
    assert block[80] == 4
    assert block[81 + 4:81 + 6] == b"\x00\x01"
    # every template transaction follows, in template order
    tail = block[81:]
    positions = [tail.find(bytes.fromhex(tx["data"])) for tx in pool.daemon.txs]
    assert positions == sorted(positions) and positions[0] > 0
    assert pool.sink.blocks and pool.sink.blocks[0].accepted
    await client.close()


async def test_share_not_meeting_network_target_is_not_a_block():
    started, task = await start_pool(bits="1d00ffff")
    try:
        client, (_, en1, _), difficulty, notify = await ready_client(started.port)
        ntime, nonce = solve(notify, en1, "000000aa", difficulty)
        assert (await submit(client, notify, "000000aa", ntime, nonce))["result"] is True
        await asyncio.sleep(0.1)
        assert started.daemon.submitted == [] and started.sink.accepted == 1
        await client.close()
    finally:
        task.cancel()
        await started.server.close()


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("bad_extranonce2_size", 20),
        ("ntime_too_old", 20),
        ("ntime_too_new", 20),
        ("nonce_not_hex", 20),
        ("nonce_wrong_size", 20),
        ("version_bits_without_rolling", 20),
        ("wrong_param_count", 20),
        ("unknown_job", 20),
        ("unauthorized_worker", 24),
    ],
)
async def test_malformed_submit_is_rejected_with_its_code(pool: Pool, case: str, code: int):
    client, _, _, notify = await ready_client(pool.port)
    job_id, ntime = notify[0], notify[7]
    params = {
        "bad_extranonce2_size": [GOOD + ".rig1", job_id, "0001", ntime, "00000000"],
        "ntime_too_old": [GOOD + ".rig1", job_id, "00000000",
                          f"{int(ntime, 16) - 3600:08x}", "00000000"],
        "ntime_too_new": [GOOD + ".rig1", job_id, "00000000",
                          f"{int(ntime, 16) + 3 * 3600:08x}", "00000000"],
        "nonce_not_hex": [GOOD + ".rig1", job_id, "00000000", ntime, "zzzzzzzz"],
        "nonce_wrong_size": [GOOD + ".rig1", job_id, "00000000", ntime, "000000000"],
        "version_bits_without_rolling": [GOOD + ".rig1", job_id, "00000000", ntime,
                                         "00000000", "00002000"],
        "wrong_param_count": [GOOD + ".rig1", job_id],
        "unknown_job": [GOOD + ".rig1", "nosuchjob", "00000000", ntime, "00000000"],
        "unauthorized_worker": [GOOD + ".other", job_id, "00000000", ntime, "00000000"],
    }[case]
    reply = await client.call("mining.submit", params)
    assert reply["result"] is None
    assert reply["error"][0] == code, reply
    assert pool.sink.rejects_by_code[code] == 1
    await client.close()


async def test_submit_before_subscribe_is_code_25(pool: Pool):
    client = await RawClient.connect(pool.port)
    reply = await client.call("mining.submit", [GOOD, "1", "00000000", "00000000", "00000000"])
    assert reply["error"][0] == 25
    await client.close()


async def test_duplicate_share_is_code_22(pool: Pool):
    client, (_, en1, _), difficulty, notify = await ready_client(pool.port)
    ntime, nonce = solve(notify, en1, "00000002", difficulty)
    assert (await submit(client, notify, "00000002", ntime, nonce))["result"] is True
    again = await submit(client, notify, "00000002", ntime, nonce)
    assert again["error"][0] == 22
    await client.close()


async def test_low_difficulty_share_is_code_23():
    started, task = await start_pool(bits="1d00ffff")
    try:
        client, (_, en1, _), _, notify = await ready_client(started.port, password="d=1000")
        # A nonce that misses the share target (1000) - independently checked in solve().
        ntime, nonce = solve(notify, en1, "00000003", 1000, want_valid=False)
        reply = await submit(client, notify, "00000003", ntime, nonce)
        assert reply["error"][0] == 23
        assert started.sink.rejects_by_code[23] == 1
        await client.close()
    finally:
        task.cancel()
        await started.server.close()


async def test_stale_share_after_new_block_is_code_21_and_clean_job_follows(pool: Pool):
    client, (_, en1, _), difficulty, notify = await ready_client(pool.port)
    ntime, nonce = solve(notify, en1, "00000004", difficulty)
    pool.daemon.new_block()
    fresh = await client.wait_notification("mining.notify")
    assert fresh["params"][8] is True and fresh["params"][0] != notify[0]
    assert fresh["params"][1] != notify[1]
    reply = await submit(client, notify, "00000004", ntime, nonce)
    assert reply["error"][0] == 21
    await client.close()


async def test_version_rolling_accepts_bits_inside_mask_only(pool: Pool):
    client = await RawClient.connect(pool.port)
    conf = await client.call("mining.configure",
                             [["version-rolling"], {"version-rolling.mask": "ffffffff"}])
    assert conf["result"] == {"version-rolling": True, "version-rolling.mask": "1fffe000"}
    await client.call("mining.subscribe", [])
    await client.call("mining.authorize", [GOOD, "x"])
    notify = (await client.wait_notification("mining.notify"))["params"]
    outside = await submit(client, notify, "00000005", notify[7], 1, worker=GOOD,
                           extra=["00000001"])
    assert outside["error"][0] == 20 and "mask" in outside["error"][1]
    await client.close()


async def test_bad_address_is_refused_and_disconnected(pool: Pool):
    client = await RawClient.connect(pool.port)
    await client.call("mining.subscribe", [])
    reply = await client.call("mining.authorize", ["badaddress.rig", "x"])
    assert reply["error"][0] == 24 and "badaddress" in reply["error"][1]
    assert await client.closed()


async def test_fixed_difficulty_from_password(pool: Pool):
    client, _, difficulty, _ = await ready_client(pool.port, password="x,d=0.5")
    assert difficulty == 0.5
    await client.close()


async def test_garbage_gets_errors_and_connection_keeps_serving(pool: Pool):
    client = await RawClient.connect(pool.port)
    for line in [b"not json\n", b"[1,2,3]\n", b'{"id":1}\n', b'{"id":2,"method":"x.y"}\n',
                 b'{"id":3,"method":"mining.subscribe","params":{}}\n']:
        await client.send_line(line)
        reply = await client.read()
        assert reply["result"] is None and reply["error"][0] == 20
    reply = await client.call("mining.subscribe", [])
    assert reply["error"] is None
    await client.close()


async def test_overlong_line_closes_connection(pool: Pool):
    client = await RawClient.connect(pool.port)
    await client.send_line(b"x" * (SessionLimits().max_line + 10))
    reply = await client.read()
    assert "too long" in reply["error"][1]
    assert await client.closed()


async def test_invalid_share_flood_bans_ip():
    started, task = await start_pool(ban_min_shares=10, ban_seconds=60)
    try:
        client, _, _, notify = await ready_client(started.port)
        for i in range(10):
            # extranonce2 of the wrong size: invalid whatever the job
            await client.call("mining.submit", [GOOD + ".rig1", notify[0], f"{i:04x}",
                                                notify[7], "00000000"])
        assert await client.closed()
        again = await RawClient.connect(started.port)
        assert await again.closed()
        assert started.server.guard.is_banned("127.0.0.1")
    finally:
        task.cancel()
        await started.server.close()


async def test_idle_unsubscribed_connection_is_swept():
    started, task = await start_pool(subscribe_timeout=0.1)
    try:
        client = await RawClient.connect(started.port)
        await asyncio.sleep(0.2)
        started.server.sweep(time.monotonic())
        assert await client.closed()
        assert started.server.sessions == {}
    finally:
        task.cancel()
        await started.server.close()


async def test_connection_cap():
    started, task = await start_pool(max_connections=2)
    try:
        first = await RawClient.connect(started.port)
        second = await RawClient.connect(started.port)
        await first.call("mining.subscribe", [])
        await second.call("mining.subscribe", [])
        third = await RawClient.connect(started.port)
        assert await third.closed()
        assert (await first.call("mining.subscribe", []))["error"] is None
    finally:
        task.cancel()
        await started.server.close()


async def test_flood_is_throttled_not_fatal():
    limits = replace(SessionLimits(), messages_per_second=200, message_burst=20)
    started, task = await start_pool(limits=limits)
    try:
        client = await RawClient.connect(started.port)
        lines = b"".join(json.dumps({"id": i, "method": "mining.ping", "params": []}).encode()
                         + b"\n" for i in range(100))
        began = time.monotonic()
        await client.send_line(lines)
        replies = [await client.read() for _ in range(100)]
        elapsed = time.monotonic() - began
        assert [r["id"] for r in replies] == list(range(100))
        # 80 messages beyond the burst at 200/s take about 0.4 s.
        assert elapsed >= 0.3
    finally:
        task.cancel()
        await started.server.close()


def make_cert(directory) -> tuple[str, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


async def tls_client(port: int, cert: str) -> RawClient:
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    return RawClient(reader, writer)


async def test_tls_port_serves_stratum(tmp_path):
    cert, key = make_cert(tmp_path)
    started, task = await start_pool(tls=(cert, key))
    try:
        client = await tls_client(started.port, cert)
        reply = await client.call("mining.subscribe", [])
        assert reply["error"] is None and len(reply["result"][1]) == 8
        # A plain-text client on the TLS port gets no stratum answer.
        plain = await RawClient.connect(started.port)
        await plain.send_line(b'{"id":1,"method":"mining.subscribe","params":[]}\n')
        assert await plain.closed()
        await client.close()
    finally:
        task.cancel()
        await started.server.close()


async def eof_after(reader: asyncio.StreamReader, timeout: float) -> float:
    """Seconds until the server closes the connection (fails after ``timeout``)."""
    began = time.monotonic()
    async with asyncio.timeout(timeout):
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
    return time.monotonic() - began


@pytest.mark.parametrize("cap", ["max_connections_per_ip", "max_connections"])
async def test_tls_handshakes_count_against_the_caps_and_time_out(tmp_path, cap: str):
    """Connections on a TLS port that never complete their handshake hold their slot
    under the caps from the start (a third is refused at once), and only until the
    handshake timeout; then a real TLS miner gets in."""
    cert, key = make_cert(tmp_path)
    limits = replace(SessionLimits(), tls_handshake_timeout=1.5)
    started, task = await start_pool(tls=(cert, key), limits=limits, **{cap: 2})
    try:
        stalled = [await asyncio.open_connection("127.0.0.1", started.port)
                   for _ in range(2)]
        began = time.monotonic()
        while started.server.handshaking < 2:
            assert time.monotonic() - began < 5, "the server did not accept both"
            await asyncio.sleep(0.01)
        refused, refused_writer = await asyncio.open_connection("127.0.0.1", started.port)
        assert await eof_after(refused, 5) < 1.0  # refused, not left to time out
        # The stalled ones are cut at the handshake timeout, not 60 s later.
        for reader, _ in stalled:
            assert await eof_after(reader, 10) < 5
        assert time.monotonic() - began >= 1.4
        assert started.server.handshaking == 0
        client = await tls_client(started.port, cert)
        assert (await client.call("mining.subscribe", []))["error"] is None
        assert len(started.server.sessions) == 1
        await client.close()
        for _, writer in [*stalled, (refused, refused_writer)]:
            writer.close()
    finally:
        task.cancel()
        await started.server.close()


async def test_a_tls_session_releases_its_slot_when_it_closes(tmp_path):
    cert, key = make_cert(tmp_path)
    started, task = await start_pool(tls=(cert, key), max_connections_per_ip=1)
    try:
        for _ in range(3):  # one at a time fits the cap of one, again and again
            client = await tls_client(started.port, cert)
            assert (await client.call("mining.subscribe", []))["error"] is None
            await client.close()
            while started.server.sessions:
                await asyncio.sleep(0.01)
        assert started.server.guard.stats == {}
    finally:
        task.cancel()
        await started.server.close()


async def test_stale_shares_do_not_ban():
    """Shares for a job the pool issued and retired (a new block came) are stale:
    code 21, and any number of them never bans."""
    started, task = await start_pool(ban_min_shares=10, ban_seconds=60)
    try:
        client, _, _, notify = await ready_client(started.port)
        started.daemon.new_block()
        fresh = await client.wait_notification("mining.notify")
        assert fresh["params"][0] != notify[0]
        for i in range(30):
            reply = await client.call("mining.submit", [GOOD + ".rig1", notify[0],
                                                        f"{i:08x}", notify[7], "00000000"])
            assert reply["error"] == [21, "job not found (stale)", None]
        assert not started.server.guard.is_banned("127.0.0.1")
        assert (await client.call("mining.ping", []))["result"] == "pong"
    finally:
        task.cancel()
        await started.server.close()


async def test_unknown_job_ids_count_as_invalid_and_ban():
    """A job id the pool never issued is the miner's error, not the network's: code 20
    "unknown job id", counted toward the invalid-share ban like any invalid share."""
    started, task = await start_pool(ban_min_shares=10, ban_seconds=60)
    try:
        client, _, _, notify = await ready_client(started.port)
        replies = []
        for i in range(10):
            replies.append(await client.call("mining.submit", [
                GOOD + ".rig1", f"never{i}", f"{i:08x}", notify[7], "00000000"]))
        assert [r["error"] for r in replies] == [[20, "unknown job id", None]] * 10
        assert await client.closed()
        assert started.server.guard.is_banned("127.0.0.1")
        assert started.sink.rejects_by_code[20] == 10
    finally:
        task.cancel()
        await started.server.close()


async def test_a_job_retired_long_ago_is_unknown_not_stale():
    """Only recently retired ids are stale: past STALE_FOR the id is unknown (20)."""
    started, task = await start_pool()
    try:
        client, _, _, notify = await ready_client(started.port)
        started.daemon.new_block()
        await client.wait_notification("mining.notify")
        params = [GOOD + ".rig1", notify[0], "00000001", notify[7], "00000000"]
        assert (await client.call("mining.submit", params))["error"][0] == 21
        # The pool retired it STALE_FOR seconds ago: move its retirement back in time.
        started.jobs.retired[notify[0]] -= started.jobs.STALE_FOR
        params[2] = "00000002"
        assert (await client.call("mining.submit", params))["error"] == [
            20, "unknown job id", None]
    finally:
        task.cancel()
        await started.server.close()


async def test_suggest_difficulty_and_extranonce_subscribe(pool: Pool):
    client = await RawClient.connect(pool.port)
    assert (await client.call("mining.extranonce.subscribe", []))["result"] is True
    await client.call("mining.subscribe", [])
    assert (await client.call("mining.suggest_difficulty", [0.25]))["result"] is True
    await client.call("mining.authorize", [GOOD, "x"])
    difficulty = await client.wait_notification("mining.set_difficulty")
    assert difficulty["params"] == [0.25]
    # beyond the port's ceiling: clamped, not obeyed
    await client.call("mining.suggest_difficulty", [1e30])
    assert (await client.wait_notification("mining.set_difficulty"))["params"] == [1e12]
    bad = await client.call("mining.suggest_difficulty", ["lots"])
    assert bad["error"][0] == 20 and "number" in bad["error"][1]
    await client.close()


async def test_vardiff_raises_difficulty_of_a_fast_miner():
    started, task = await start_pool(bits="1d00ffff")
    try:
        port = replace(started.server.config.ports[0], vardiff=True, difficulty=1e-6,
                       target_share_time=10, retarget_interval=60)
        started.server.config = replace(started.server.config, ports=(port,))
        await started.server.close()
        started.server._servers.clear()
        await started.server.start()
        port_number = started.server.bound_ports()[0]
        client, (_, en1, _), difficulty, notify = await ready_client(port_number)
        # Eight shares in well under a second: far faster than one per 10 s.
        for i in range(8):
            ntime, nonce = solve(notify, en1, f"{i:08x}", difficulty)
            assert (await submit(client, notify, f"{i:08x}", ntime, nonce))["result"] is True
        raised = await client.wait_notification("mining.set_difficulty")
        assert raised["params"][0] == pytest.approx(difficulty * 4)  # capped at 4x a step
        await client.close()
    finally:
        task.cancel()
        await started.server.close()


async def test_client_that_does_not_read_is_cut_off():
    limits = replace(SessionLimits(), max_send_buffer=64 * 1024)
    started, task = await start_pool(limits=limits)
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", started.port)
        writer.write(b'{"id":1,"method":"mining.subscribe","params":[]}\n')
        await writer.drain()
        await asyncio.sleep(0.1)
        (session,) = started.server.sessions.values()
        # Jobs keep coming; the client never reads. Kernel buffers fill, then ours.
        for _ in range(2000):
            session.send_raw(b"x" * 8192 + b"\n")
            await asyncio.sleep(0)
            if session.closing:
                break
        assert session.closing
        await asyncio.sleep(0.1)
        assert started.server.sessions == {}
        writer.close()
    finally:
        task.cancel()
        await started.server.close()


async def test_several_ports_with_their_own_difficulty():
    daemon = FakeTemplateDaemon()
    config = StratumSection(host="127.0.0.1", ports=(
        PortConfig(port=0, difficulty=0.5, vardiff=False),
        PortConfig(port=0, difficulty=64, vardiff=False)))
    server: StratumServer
    jobs = JobManager(daemon=daemon, rules=("segwit",), payout_script=PAYOUT,
                      extranonce_size=8, pool_tag=b"", on_job=lambda j: server.broadcast(j))
    server = StratumServer(config=config, algorithm=ALGORITHMS["sha256d"], jobs=jobs,
                           sink=MemoryShareSink(), submitter=daemon,
                           check_address=check_address)
    task = asyncio.create_task(jobs.run())
    try:
        await asyncio.wait_for(jobs.first_job.wait(), 5)
        await server.start()
        low, high = server.bound_ports()
        assert low != high
        _, _, low_difficulty, _ = await ready_client(low)
        _, _, high_difficulty, _ = await ready_client(high)
        assert (low_difficulty, high_difficulty) == (0.5, 64)
    finally:
        task.cancel()
        await server.close()
