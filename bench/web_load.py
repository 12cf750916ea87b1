"""Pages under load, and what that load does to stratum.

The web side: a SQLite pool database with 1,000 miners and 1,000,000 shares over the last
24 hours (bulk inserts into the accounting schema's ``shares`` table, rolled up by the
engine's own ``StatsRoller``), 48 blocks (confirmed, pending and orphaned, with their
reward snapshots), 24 payment batches of 100 miners each and every miner's balance; its
``status.json`` written by the engine's own ``PublicStatusWriter`` every 10 s (a child
process, as the engine would); a real `multipool web serve` reading it, behind a
throwaway nginx on loopback with the site multipool generates (its rate limit raised: the
clients all come from 127.0.0.1; at nice 10, as its systemd unit runs it). 200 concurrent
aiohttp clients (in ``--load-processes`` processes at nice 19: in production they are
elsewhere) cycle through the index, the pool page, a miner page and the miner API (a
random one of the 1,000 miners each time): requests/s and p50/p99 latency per URL as the
clients measured it and as nginx logged it (``$request_time``: the server's own time,
without the delays of clients that wait for a core on the same machine), and the
clients' own event loop lateness (a 5 ms ticker in each load process). Twice:
each client pausing about ``--think`` seconds between pages (people reading them), then
with no pause at all (the most the server answers: its latency is then mostly queueing).

The stratum side: a real pool engine (``engine.run_pool`` in its own process, as `pool
serve`, status every 5 s) on a litecoind regtest pair, with a CPU miner sending shares
through the stratum port (blocks skipped: in regtest every other share is a block, and
block submissions are not what is measured): without web load, then during each of the
two web phases. Per phase: the share reply latency (p50/p99/max, measured by the
miner from sending a share to reading its reply) and the engine's event loop lateness
(p99 and max over the last minute, the ``counters.loop_lag`` of its status.json).
Targets (issue 9): page p99 < 50 ms, stratum loop p99 stall < 10 ms. Nothing is asserted:
the figures are printed and written to bench/results/web_load.json.

Run: .venv/bin/python bench/web_load.py [--miners 1000] [--shares 1000000] [--clients 200]
     [--seconds 65] [--think 1.0] [--load-processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy
from sqlalchemy import insert

from _common import get, report, web_process
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import (
    balances,
    block_rewards,
    blocks,
    payment_batches,
    payments,
    shares,
)
from multipool.accounting.stats import StatsRoller
from multipool.chain.address import encode_segwit_address
from multipool.chain.pow import hash_to_int
from multipool.chain.sync import SyncState
from multipool.config import CoinConfig, parse_coin_config
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_data, write_coin_file
from multipool.engine import ServiceIntervals, run_pool
from multipool.miner import StratumMiner
from multipool.ops import nginx as nginx_site
from multipool.public_status import PublicStatusWriter
from multipool.stratum.protocol import DUPLICATE, JOB_NOT_FOUND, LOW_DIFFICULTY

PREFIX = "ltc"
HRP = "rltc"  # litecoin regtest bech32 addresses
COIN = 100_000_000
SHARE_DIFFICULTY = 64.0
BLOCK_REWARD = 625_000_000  # 6.25 LTC, as on mainnet today
BLOCKS = 48
BATCHES = 24
PAID_PER_BATCH = 100
MATURITY = 101  # coinbase maturity + the tracker's margin
INSERT_CHUNK = 50_000
REJECT_SHARE = 0.02
REJECT_CODES = (JOB_NOT_FOUND, DUPLICATE, LOW_DIFFICULTY)
# The miner API's address in the API the pages are served with (/api/v1, issue 9).
MINER_API = "/api/v1/pools/{prefix}/miners/{address}"
# The stratum phases' miner: shares a second at the difficulty below (regtest).
STRATUM_DIFFICULTY = 2e-5
MINER_HASHRATE = 100.0
STATUS_EVERY = 5.0  # the benchmark engine's status interval, seconds
PAGE_TARGET_MS = 50.0
CLIENT_NICE = 19
# As the web service's unit runs it (ops/web.py): it yields the CPU to the pool engines.
WEB_NICE = 10
LOOP_TARGET_MS = 10.0


# --- the pool's history ----------------------------------------------------------------


def miner_addresses(count: int) -> list[str]:
    """``count`` valid regtest P2WPKH addresses of hashes no wallet holds."""
    return [encode_segwit_address(HRP, 0, hashlib.sha256(f"miner {i}".encode()).digest()[:20])
            for i in range(count)]


def build_history(path: Path, *, miners: int, share_count: int, hours: float,
                  seed: int = 9) -> dict[str, Any]:
    """Fill a fresh SQLite pool database at ``path``; return what went in and the
    seconds each step took."""
    rng = random.Random(seed)
    url = f"sqlite:///{path}"
    timings: dict[str, float] = {}
    began = time.perf_counter()
    asyncio.run(_migrate(url))
    timings["schema"] = time.perf_counter() - began

    addresses = miner_addresses(miners)
    # A few big miners and a long tail, as pools have; 1-4 workers each.
    weights = [1 / (rank + 1) ** 0.8 for rank in range(miners)]
    workers = [[f"rig{n + 1}" for n in range(rng.randint(1, 4))] for _ in range(miners)]
    now = datetime.now(UTC)
    start = now - timedelta(hours=hours)
    span = (now - start).total_seconds()
    offsets = sorted(rng.random() * span for _ in range(share_count))
    owners = rng.choices(range(miners), weights=weights, k=share_count)

    sync_engine = sqlalchemy.create_engine(url)
    began = time.perf_counter()
    with sync_engine.begin() as connection:
        for first in range(0, share_count, INSERT_CHUNK):
            rows = []
            for i in range(first, min(first + INSERT_CHUNK, share_count)):
                owner = owners[i]
                rejected = rng.random() < REJECT_SHARE
                rows.append({
                    "time": start + timedelta(seconds=offsets[i]),
                    "height": 2_500_000 + int(offsets[i] // 150),
                    "address": addresses[owner], "worker": rng.choice(workers[owner]),
                    "ip": f"10.0.{owner // 250}.{owner % 250}",
                    "difficulty": SHARE_DIFFICULTY,
                    "share_difficulty": SHARE_DIFFICULTY * (1 + rng.random()),
                    "accepted": not rejected,
                    "reject_code": rng.choice(REJECT_CODES) if rejected else None})
            connection.execute(insert(shares), rows)
    timings["shares"] = time.perf_counter() - began

    began = time.perf_counter()
    counts = _blocks_and_payments(sync_engine, rng, addresses, weights, start, now, span)
    sync_engine.dispose()
    timings["blocks and payments"] = time.perf_counter() - began

    began = time.perf_counter()
    rolled = asyncio.run(_roll(url))
    timings["stats roll-up"] = time.perf_counter() - began
    assert rolled == share_count, f"rolled {rolled} of {share_count} shares"
    return {"miners": miners, "shares": share_count, "hours": hours, **counts,
            "seconds": {k: round(v, 1) for k, v in timings.items()},
            "database_mb": round(path.stat().st_size / 1e6, 1), "addresses": addresses}


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _roll(url: str) -> int:
    engine = create_engine(url)
    try:
        return await StatsRoller(engine).roll()
    finally:
        await engine.dispose()


def _blocks_and_payments(engine: sqlalchemy.Engine, rng: random.Random, addresses: list[str],
                         weights: list[float], start: datetime, now: datetime,
                         span: float) -> dict[str, int]:
    """Blocks every half hour (the last three pending, two orphaned) with reward
    snapshots split over 50 miners, hourly payment batches of 100 miners, balances."""
    with engine.begin() as connection:
        block_rows, reward_rows = [], []
        for n in range(BLOCKS):
            found = start + timedelta(seconds=span * (n + 1) / (BLOCKS + 1))
            status = "pending" if n >= BLOCKS - 3 else ("orphaned" if n in (10, 30)
                                                         else "confirmed")
            finder = rng.choices(range(len(addresses)), weights=weights)[0]
            block_rows.append({
                "id": n + 1, "height": 2_500_000 + n * 12,
                "hash": hashlib.sha256(f"block {n}".encode()).hexdigest(), "time": found,
                "address": addresses[finder], "worker": "rig1", "reward": BLOCK_REWARD,
                "network_difficulty": 2.0e7, "effort": round(rng.uniform(0.2, 2.5), 3),
                "last_share_id": None, "status": status,
                "confirmations": 40 if status == "pending" else MATURITY + 5,
                "rewards_split": True, "scheme": "pplns"})
            split = rng.sample(range(len(addresses)), 50)
            for owner in split:
                reward_rows.append({"block_id": n + 1, "address": addresses[owner],
                                    "amount": BLOCK_REWARD // 50})
        connection.execute(insert(blocks), block_rows)
        connection.execute(insert(block_rewards), reward_rows)
        batch_rows, payment_rows = [], []
        for n in range(BATCHES):
            batch_id = f"00000000-0000-4000-8000-{n:012d}"
            paid = rng.sample(range(len(addresses)), PAID_PER_BATCH)
            amounts = [rng.randint(COIN // 10, COIN) for _ in paid]
            batch_rows.append({
                "id": batch_id, "created": start + timedelta(hours=n + 0.5),
                "status": "confirmed",
                "txid": hashlib.sha256(f"payment {n}".encode()).hexdigest(),
                "total": sum(amounts), "fee": 20_000,
                "finished": start + timedelta(hours=n + 0.6), "fee_mode": "pool"})
            payment_rows.extend({"batch_id": batch_id, "address": addresses[owner],
                                 "amount": amount, "fee": 0}
                                for owner, amount in zip(paid, amounts, strict=True))
        connection.execute(insert(payment_batches), batch_rows)
        connection.execute(insert(payments), payment_rows)
        connection.execute(insert(balances), [
            {"address": address, "amount": rng.randint(0, COIN // 10)}
            for address in addresses])
    return {"blocks": len(block_rows), "payment_batches": len(batch_rows),
            "payments": len(payment_rows)}


# --- its status file, as the engine writes it ----------------------------------------------


def bench_coin(root: Path, database: Path, port: int = 3333) -> CoinConfig:
    """The big pool's coin config (its daemon is never called: only the status file's
    writer reads it)."""
    return parse_coin_config({
        "coin": {"name": "litecoin", "prefix": PREFIX, "symbol": "LTC",
                 "algorithm": "scrypt", "network": "regtest"},
        "daemon": {"rpc_url": "http://127.0.0.1:9", "rpc_user": "bench",
                   "rpc_password": "unused"},
        "stratum": {"host": "127.0.0.1",
                    "ports": [{"port": port, "difficulty": SHARE_DIFFICULTY}]},
        "pool": {"address": miner_addresses(1)[0], "database": f"sqlite:///{database}",
                 "public_dir": str(root / "web" / PREFIX), "state_dir": str(root / PREFIX)},
    }, "bench")


class _Running:
    """What the status writer asks of a running engine: synced, stratum open."""

    sync_state = SyncState(blocks=2_500_600, headers=2_500_600, peers=8,
                           initial_download=False, verification_progress=1.0)
    stratum_open = True

    def counters(self) -> dict[str, Any]:
        return {}


def publish_status(root: str, database: str, stop: Any) -> None:
    """Write the big pool's status.json every 10 s until ``stop`` (an Event) is set."""
    asyncio.run(_publish(Path(root), Path(database), stop))


async def _publish(root: Path, database: Path, stop: Any) -> None:
    config = bench_coin(root, database)
    engine = create_engine(f"sqlite:///{database}")
    writer = PublicStatusWriter(config=config, database=engine, engine=_Running(),
                                directory=root / "web" / PREFIX, services=dict)
    try:
        while not stop.is_set():
            await writer.publish()
            for _ in range(100):
                if stop.is_set():
                    break
                await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


# --- nginx in front -----------------------------------------------------------------------


@contextlib.contextmanager
def nginx_proxy(work: Path, upstream: str) -> Iterator[str]:
    """A throwaway nginx on a free loopback port with multipool's site proxying to
    ``upstream``; yield its base URL."""
    binary = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if binary is None:
        raise SystemExit("nginx is not installed: run `make setup`")
    port = free_port()
    directory = work / "nginx"
    (directory / "temp").mkdir(parents=True)
    site = directory / "site.conf"
    http_includes = []
    render = getattr(nginx_site, "render", None)
    if render is not None:  # the site file, the include file it names, the http part
        include = directory / "multipool-include.conf"
        text = render(server_name="localhost", upstream=upstream, listen_port=port,
                      include=include)
        include.write_text(text.include)
        site.write_text(text.site)
        if getattr(text, "http_include", None):
            (directory / "multipool-http.conf").write_text(text.http_include)
            http_includes.append(directory / "multipool-http.conf")
    else:
        site.write_text(nginx_site.render_site(server_name="localhost", upstream=upstream,
                                               listen_port=port))
    http_includes.append(site)
    temp = "\n".join(f"    {name}_temp_path {directory / 'temp' / name};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    mime = "    include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() \
        else ""
    (directory / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {directory / 'nginx.pid'};\nerror_log {directory / 'error.log'} warn;\n"
        # As a Debian nginx: a worker per core, keep-alive to clients.
        + "worker_processes auto;\nevents { worker_connections 1024; }\n"
        # Each request's time as nginx saw it (from its first byte read to its last
        # sent): the page as the server delivers it, whatever the clients' own delays.
        + f"http {{\n{mime}\n    log_format timed '$request_uri $status $request_time';\n"
        + f"    access_log {directory / 'access.log'} timed;\n{temp}\n"
        + "".join(f"    include {path};\n" for path in http_includes) + "}\n")
    argv = [binary, "-p", f"{directory}/", "-c", str(directory / "nginx.conf"),
            "-e", str(directory / "error.log")]
    checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise SystemExit(f"nginx -t refused the site:\n{checked.stderr}")
    process = subprocess.Popen([*argv, "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if get(f"{base}/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("nginx did not come up:\n"
                                 + (directory / "error.log").read_text()[-2000:])
            time.sleep(0.1)
        yield base
    finally:
        subprocess.run([*argv, "-s", "quit"], capture_output=True, check=False)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# --- the web clients ----------------------------------------------------------------------


def kind_of(uri: str) -> str | None:
    """Which of the page_urls a request's URI is (None: another one)."""
    if uri == "/":
        return "index"
    if uri == f"/{PREFIX}/":
        return "pool page"
    if uri.startswith(f"/{PREFIX}/miners/"):
        return "miner page"
    if uri.startswith(MINER_API.format(prefix=PREFIX, address="")):
        return "miner API"
    return None


def nginx_times(log: Path, start: int) -> dict[str, list[float]]:
    """The request times (s) nginx logged per page kind from byte ``start`` of its
    access log on."""
    times: dict[str, list[float]] = {}
    with open(log, "rb") as lines:
        lines.seek(start)
        for line in lines:
            fields = line.decode(errors="replace").split()
            kind = kind_of(fields[0]) if len(fields) == 3 else None
            if kind is not None:
                times.setdefault(kind, []).append(float(fields[2]))
    return times


def page_urls(base: str, address: str) -> dict[str, str]:
    return {"index": f"{base}/", "pool page": f"{base}/{PREFIX}/",
            "miner page": f"{base}/{PREFIX}/miners/{address}",
            "miner API": base + MINER_API.format(prefix=PREFIX, address=address)}


def load_process(base: str, addresses: list[str], clients: int, seconds: float,
                 think: float, seed: int, results: Any) -> None:
    """Run ``clients`` concurrent clients for ``seconds``; put per-URL latencies (s),
    statuses and the measured span into ``results`` (a queue).

    The clients would be elsewhere in production: here they yield the CPU to the
    server's processes (nice 19), so their own delays count against the pages."""
    os.nice(CLIENT_NICE)
    results.put(asyncio.run(_load(base, addresses, clients, seconds, think, seed)))


async def _load(base: str, addresses: list[str], clients: int, seconds: float,
                think: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    kinds = list(page_urls(base, addresses[0]))
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    statuses: dict[str, dict[int, int]] = {kind: {} for kind in kinds}
    errors: dict[str, int] = {kind: 0 for kind in kinds}
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)  # one keep-alive connection per client
    began = time.perf_counter()
    end = began + seconds

    async def client(number: int, session: aiohttp.ClientSession) -> None:
        turn = number  # clients start on different URLs
        if think:  # people arrive at their own moments, not all in the same millisecond
            await asyncio.sleep(think * rng.uniform(0.0, 1.0))
        while time.perf_counter() < end:
            kind = kinds[turn % len(kinds)]
            turn += 1
            url = page_urls(base, rng.choice(addresses))[kind]
            sent = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                errors[kind] += 1
                continue
            latencies[kind].append(time.perf_counter() - sent)
            statuses[kind][status] = statuses[kind].get(status, 0) + 1
            if think:  # a person reading the page, each at their own pace
                await asyncio.sleep(think * rng.uniform(0.5, 1.5))

    lateness: list[float] = []
    ticker = asyncio.create_task(tick(lateness, end))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"Accept-Encoding": "gzip"}) as session:
        await asyncio.gather(*(client(n, session) for n in range(clients)))
    await ticker
    return {"latencies": latencies, "statuses": statuses, "errors": errors,
            "seconds": time.perf_counter() - began, "loop_lateness": lateness}


def one_client(base: str, addresses: list[str], requests: int = 50) -> list[dict[str, Any]]:
    """Each URL ``requests`` times, one request at a time, a random miner each time."""
    rng = random.Random(1)
    rows = []
    for kind in page_urls(base, addresses[0]):
        latencies, failed = [], 0
        began = time.perf_counter()
        for _ in range(requests):
            sent = time.perf_counter()
            status, _body = get(page_urls(base, rng.choice(addresses))[kind], timeout=30)
            latencies.append(time.perf_counter() - sent)
            failed += status != 200
        rows.append({"measure": f"{kind}, one client", "requests": requests,
                     "requests/s": requests / (time.perf_counter() - began),
                     "p50 ms": percentile(latencies, 0.5) * 1000,
                     "p99 ms": percentile(latencies, 0.99) * 1000, "non-200": failed})
    return rows


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99) of ``values``."""
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))
    return ordered[rank - 1]


# --- the stratum side ---------------------------------------------------------------------


class TimedMiner(StratumMiner):
    """The project's CPU miner, timing every share from sending to its reply; a share
    that is also a block is not sent (every other share is one in regtest, and what is
    measured is the share path, not block submission)."""

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.latencies: list[float] = []
        self.skipped_blocks = 0

    async def _submit(self, job: Any, extranonce2: bytes, nonce: int, version: int,
                      digest: bytes) -> bool:
        if hash_to_int(digest) <= job.network_target:
            self.skipped_blocks += 1
            return False
        return await super()._submit(job, extranonce2, nonce, version, digest)

    async def _request(self, method: str, params: list[Any], on_result: Any
                       ) -> tuple[int, asyncio.Future[Any]]:
        sent = time.perf_counter()
        msg_id, future = await super()._request(method, params, on_result)
        if method == "mining.submit":
            def answered(done: asyncio.Future[Any]) -> None:
                if not done.cancelled() and not isinstance(done.exception(), ConnectionError):
                    self.latencies.append(time.perf_counter() - sent)
            future.add_done_callback(answered)
        return msg_id, future


def engine_process(coin_file: str) -> None:
    """``--engine``: run a pool engine as `pool serve` does, status every 5 s."""
    from multipool.config import load_coin_config

    config = load_coin_config(coin_file)
    intervals = ServiceIntervals(status=STATUS_EVERY, stats=10.0, blocks=10.0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_pool(config, intervals=intervals))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


async def wait_status_after(path: Path, after: datetime, timeout: float) -> dict[str, Any]:
    """The engine's status.json once it was written after ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_json(path)
        if status and datetime.fromisoformat(status["updated"]) > after:
            return status
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no status written after {after} within {timeout} s")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process and its running children (the engine's
    share-check workers) used so far."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # After the command name in parentheses: state, ppid, ..., utime, stime.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def process_listening(port: int) -> int:
    """The pid of the `multipool web serve` started with ``--listen 127.0.0.1:PORT``
    (the parent of its workers, whose command line is the same)."""
    wanted = f"127.0.0.1:{port}".encode()
    found: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"serve" in argv and wanted in argv:
                    parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                    found[int(entry.name)] = int(parent)
    for pid, parent in found.items():
        if parent not in found:
            return pid
    raise SystemExit(f"no web process found listening on {port}")


async def tick(lateness: list[float], until: float, interval: float = 0.005) -> None:
    """Until ``until`` (perf_counter), sleep ``interval`` at a time and record how much
    later than asked each sleep ended."""
    while (due := time.perf_counter() + interval) < until:
        await asyncio.sleep(interval)
        lateness.append(max(0.0, time.perf_counter() - due))


async def stratum_phase(miner: TimedMiner, status_file: Path, seconds: float,
                        pids: dict[str, int]) -> dict[str, Any]:
    """Share reply latencies over ``seconds``, the engine's loop lateness over the last
    minute of them, and the cores each of ``pids`` used meanwhile."""
    miner.latencies.clear()
    began = datetime.now(UTC)
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    clock = time.perf_counter()
    # The miner's own loop, ticked as the engine's is: a late reply may be the miner's
    # (this process waiting for a core) as well as the engine's.
    lateness: list[float] = []
    ticker = asyncio.create_task(tick(lateness, clock + seconds))
    await asyncio.sleep(seconds)
    await ticker
    elapsed = time.perf_counter() - clock
    cores = {name: round((cpu_seconds(pid) - cpu[name]) / elapsed, 2)
             for name, pid in pids.items()}
    latencies = list(miner.latencies)
    # The loop figures cover the minute before the status was written: one written at
    # least a minute into the phase covers the phase alone.
    status = await wait_status_after(status_file, max(began + timedelta(seconds=60),
                                                      datetime.now(UTC)), 3 * STATUS_EVERY)
    lag = ((status.get("counters") or {}).get("loop_lag")) or None
    row: dict[str, Any] = {"shares": len(latencies)}
    if latencies:
        row.update(p50_ms=percentile(latencies, 0.5) * 1000,
                   p99_ms=percentile(latencies, 0.99) * 1000,
                   max_ms=max(latencies) * 1000)
    row["loop_lag"] = lag
    row["miner_loop_p99_ms"] = percentile(lateness, 0.99) * 1000 if lateness else None
    row["cores"] = cores
    row["load_average"] = float(Path("/proc/loadavg").read_text().split()[0])
    return row


# --- the run ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--miners", type=int, default=1000)
    parser.add_argument("--shares", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=65.0,
                        help="each phase (at least 60: the loop figure is per minute)")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--think", type=float, default=1.0,
                        help="seconds each client pauses between pages in the first web "
                             "phase (the second pauses none)")
    args = parser.parse_args()
    if args.engine:
        engine_process(args.engine)
        return
    if args.seconds < 60:
        parser.error("--seconds must be at least 60")
    with tempfile.TemporaryDirectory(prefix="multipool-web-load-") as tmp:
        run(Path(tmp), args)


def run(work: Path, args: argparse.Namespace) -> None:
    root = work / "server"
    (root / "web" / PREFIX).mkdir(parents=True)
    (root / PREFIX).mkdir()
    database = root / PREFIX / "pool.db"
    print(f"building the pool's history: {args.miners:,} miners, {args.shares:,} shares")
    history = build_history(database, miners=args.miners, share_count=args.shares,
                            hours=24)
    addresses = history.pop("addresses")
    print(f"  {history}")
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    publisher = context.Process(target=publish_status, args=(str(root), str(database), stop))
    publisher.start()
    try:
        deadline = time.monotonic() + 60
        while read_json(root / "web" / PREFIX / "status.json") is None:
            if time.monotonic() > deadline or not publisher.is_alive():
                raise SystemExit("the status writer wrote no status.json")
            time.sleep(0.2)
        web_port = free_port()
        with web_process(root, port=web_port, log=work / "web.log", nice=WEB_NICE,
                         options=("--rate-limit", "1000000")), \
                nginx_proxy(work, f"127.0.0.1:{web_port}") as base, \
                RegtestNetwork(work / "regtest", nodes=2) as network:
            check_urls(base, addresses[0])
            pids = {"web": process_listening(web_port)}
            rows, stratum = asyncio.run(measure(work, base, addresses, network, args,
                                                context, pids))
    finally:
        stop.set()
        publisher.join(30)
        if publisher.is_alive():
            publisher.kill()
    report("web_load", f"{args.clients} clients on pages through nginx "
           f"({args.shares:,} shares, {args.miners:,} miners)", rows,
           {"history": history, "clients": args.clients, "seconds": args.seconds,
            "load_processes": args.load_processes, "think": args.think,
            "web_nice": WEB_NICE, "client_nice": CLIENT_NICE, "stratum": stratum,
            "targets": {"page_p99_ms": PAGE_TARGET_MS, "loop_p99_ms": LOOP_TARGET_MS}})
    stratum_rows = []
    for phase, figures in stratum.items():
        lag = figures.get("loop_lag") or {}
        stratum_rows.append({
            "measure": phase, "shares": figures["shares"],
            "reply p50": figures.get("p50_ms", float("nan")),
            "reply p99": figures.get("p99_ms", float("nan")),
            "reply max": figures.get("max_ms", float("nan")),
            "loop p99": lag.get("p99_ms", "n/a"), "loop max": lag.get("max_ms", "n/a"),
            "miner loop p99": figures["miner_loop_p99_ms"] or float("nan"),
            "cores": f"{figures['cores']['engine']:.2f}/{figures['cores']['web']:.2f}"})
    report("web_load_stratum", "Stratum without and with the web load (ms; cores: "
           "engine/web)",
           stratum_rows, {"status_every": STATUS_EVERY})


def check_urls(base: str, address: str) -> None:
    """Every URL answers 200 before the load starts (else the load measures errors)."""
    for kind, url in page_urls(base, address).items():
        status, body = get(url, timeout=30)
        if status != 200:
            raise SystemExit(f"{kind} {url} answered {status}: {body[:300]!r}")


async def measure(work: Path, base: str, addresses: list[str], network: RegtestNetwork,
                  args: argparse.Namespace, context: Any, pids: dict[str, int]
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    node = network.nodes[0]
    pool_address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    node.rpc("generatetoaddress", 1, pool_address)
    port = free_port()
    public = work / "engine-public"
    public.mkdir()
    coin_file = write_coin_file(work / "engine.toml", regtest_coin_data(
        node, address=pool_address, port=port, difficulty=STRATUM_DIFFICULTY,
        database=f"sqlite:///{work / 'engine.db'}", public_dir=str(public),
        state_dir=str(work)))
    with open(work / "engine.log", "wb") as log:
        engine = subprocess.Popen([sys.executable, __file__, "--engine", str(coin_file)],
                                  stdout=subprocess.DEVNULL, stderr=log)
    miner_task: asyncio.Task[None] | None = None
    rows: list[dict[str, Any]] = []
    stratum: dict[str, Any] = {}
    try:
        status_file = public / "status.json"
        deadline = time.monotonic() + 90
        while not ((status := read_json(status_file)) and status["stratum"]["open"]):
            if engine.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the engine did not open stratum:\n"
                                 + (work / "engine.log").read_text()[-3000:])
            await asyncio.sleep(0.2)
        miner = TimedMiner(host="127.0.0.1", port=port, username=f"{addresses[0]}.bench",
                           algorithm="scrypt", hashrate_limit=MINER_HASHRATE)
        miner_task = asyncio.create_task(miner.run())
        pids = {**pids, "engine": engine.pid}
        await asyncio.sleep(5)  # connected, first shares answered
        print(f"stratum alone for {args.seconds:.0f} s")
        stratum["no web"] = await stratum_phase(miner, status_file, args.seconds, pids)
        print(f"  {stratum['no web']}")
        # The time one request takes alone: what the server costs per page.
        rows.extend(await asyncio.to_thread(one_client, base, addresses))
        for think in (args.think, 0.0):
            load = f"{think:g} s pauses" if think else "no pauses"
            phase = f"web: {load}"
            print(f"stratum with {args.clients} web clients, {load}, for "
                  f"{args.seconds:.0f} s")
            outcomes, stratum[phase] = await web_phase(
                miner, status_file, base, addresses, args, context, think, pids,
                access_log=work / "nginx" / "access.log")
            print(f"  {stratum[phase]}")
            rows.extend({"measure": f"{row.pop('measure')}, {load}", **row}
                        for row in web_rows(outcomes))
        miner.stop()
    finally:
        if miner_task is not None:
            await asyncio.wait({miner_task}, timeout=30)
        engine.terminate()
        try:
            engine.wait(60)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait(10)
    return rows, stratum


async def web_phase(miner: TimedMiner, status_file: Path, base: str, addresses: list[str],
                    args: argparse.Namespace, context: Any, think: float,
                    pids: dict[str, int], *, access_log: Path
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The clients' outcomes and the stratum figures while they load pages."""
    log_start = access_log.stat().st_size
    results = context.Queue()
    share = args.clients // args.load_processes
    loaders = [context.Process(target=load_process, args=(
        base, addresses, share + (1 if n < args.clients % args.load_processes else 0),
        args.seconds, think, n, results)) for n in range(args.load_processes)]
    for loader in loaders:
        loader.start()
    try:
        figures = await stratum_phase(miner, status_file, args.seconds, pids)
        outcomes = [await asyncio.to_thread(results.get, True, args.seconds + 120)
                    for _ in loaders]
    finally:
        for loader in loaders:
            loader.join(30)
            if loader.is_alive():
                loader.kill()
    outcomes[0]["nginx"] = nginx_times(access_log, log_start)
    return outcomes, figures


def web_rows(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per URL: what the clients measured, what nginx measured (the server's own p99,
    without the clients' delays), and how late the clients' own loops ran (at nice 19
    on the same cores, they wait for a core too)."""
    rows = []
    served = outcomes[0].get("nginx", {})
    lateness = [v for o in outcomes for v in o["loop_lateness"]]
    client_lag = percentile(lateness, 0.99) * 1000 if lateness else float("nan")
    for kind in outcomes[0]["latencies"]:
        latencies = [v for o in outcomes for v in o["latencies"][kind]]
        seconds = max(o["seconds"] for o in outcomes)
        statuses: dict[str, int] = {}
        for outcome in outcomes:
            for status, count in outcome["statuses"][kind].items():
                statuses[str(status)] = statuses.get(str(status), 0) + count
        errors = sum(o["errors"][kind] for o in outcomes)
        rows.append({"measure": kind, "requests": len(latencies),
                     "requests/s": len(latencies) / seconds,
                     "p50 ms": percentile(latencies, 0.5) * 1000 if latencies else 0.0,
                     "p99 ms": percentile(latencies, 0.99) * 1000 if latencies else 0.0,
                     "nginx p50 ms": (percentile(served[kind], 0.5) * 1000
                                      if served.get(kind) else float("nan")),
                     "nginx p99 ms": (percentile(served[kind], 0.99) * 1000
                                      if served.get(kind) else float("nan")),
                     "client loop p99 ms": client_lag,
                     "non-200": sum(n for s, n in statuses.items() if s != "200") + errors})
    return rows


if __name__ == "__main__":
    main()
