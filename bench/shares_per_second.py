"""Valid shares per second through the whole stratum path: JSON in, checks, PoW hash,
reply out, share recorded. The pool runs in this process; the miners' side runs in a
second process that only sends pre-built submits and counts replies, so the pool's
figure is what one event loop (sha256d) or one loop plus its worker processes (scrypt)
does.

The ceiling is the raw hashlib rate measured in the same run: sha256d of an 80-byte
header on one core, scrypt(1024,1,1) on as many threads as cores (the higher of a
measurement just before and just after the pool's).

Run: .venv/bin/python bench/shares_per_second.py [--shares N] [--connections C]
     [--scrypt-connections 8,64]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import threading
import time

from _common import SessionLimits, report, start_bench_pool


def raw_rate(algorithm: str, seconds: float, threads: int) -> float:
    """Hashes per second of the bare hash function on ``threads`` threads."""
    header = os.urandom(80)
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        n = 0
        if algorithm == "sha256d":
            sha = hashlib.sha256
            while time.perf_counter() < stop:
                for _ in range(1000):
                    sha(sha(header).digest()).digest()
                n += 1000
        else:
            while time.perf_counter() < stop:
                for _ in range(20):
                    hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)
                n += 20
        counts[i] = n

    began = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - began)


async def _miners(port: int, connections: int, per_connection: int) -> dict:
    async def one(index: int) -> tuple[int, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**22)

        async def call(msg: dict) -> None:
            writer.write(json.dumps(msg).encode() + b"\n")

        await call({"id": 1, "method": "mining.subscribe", "params": []})
        await call({"id": 2, "method": "mining.authorize", "params": [f"bench.{index}", "x"]})
        job = None
        while job is None:
            message = json.loads(await reader.readline())
            if message.get("method") == "mining.notify":
                job = message["params"]
        # Nothing else is pending: the next line the pool sends answers a submit.
        worker = f"bench.{index}"
        lines = b"".join(
            json.dumps({"id": 10 + i, "method": "mining.submit",
                        "params": [worker, job[0], f"{i // 65536:08x}", job[7],
                                   f"{i % 65536:08x}"]}).encode() + b"\n"
            for i in range(per_connection))
        await ready.wait()
        writer.write(lines)
        # Count replies on the raw bytes: the miners' side must cost as little CPU as it
        # can, since it shares the machine with the pool being measured.
        accepted = replies = 0
        rest = b""
        while replies < per_connection:
            chunk = await reader.read(1 << 20)
            if not chunk:
                break
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            data, rest = data[:cut], data[cut:]
            replies += data.count(b"\n")
            accepted += data.count(b'"result":true')
        writer.close()
        return accepted, replies - accepted

    ready = asyncio.Event()
    tasks = [asyncio.create_task(one(i)) for i in range(connections)]
    await asyncio.sleep(1.0)  # every connection has its job and its lines built
    began = time.perf_counter()
    ready.set()
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    return {"accepted": sum(a for a, _ in results), "rejected": sum(r for _, r in results),
            "seconds": elapsed}


def miners_process(port: int, connections: int, per_connection: int, queue) -> None:
    queue.put(asyncio.run(_miners(port, connections, per_connection)))


async def measure(algorithm: str, shares: int, connections: int) -> dict:
    # Difficulty this low makes every hash a valid share, so the miners need not hash.
    limits = SessionLimits(messages_per_second=1e9, message_burst=1e9)
    _, sink, server, task = await start_bench_pool(algorithm=algorithm, difficulty=1e-12,
                                                   limits=limits)
    port = server.bound_ports()[0]
    queue = multiprocessing.get_context("spawn").Queue()
    proc = multiprocessing.get_context("spawn").Process(
        target=miners_process, args=(port, connections, shares // connections, queue))
    proc.start()
    cpu_before = time.process_time()
    while queue.empty():
        await asyncio.sleep(0.05)
    result = queue.get()
    cpu = time.process_time() - cpu_before
    proc.join()
    task.cancel()
    await server.close()
    assert sink.accepted == result["accepted"], (sink.accepted, result)
    result["rate"] = result["accepted"] / result["seconds"]
    result["pool_cpu_seconds"] = cpu
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shares", type=int, default=200_000, help="sha256d shares")
    parser.add_argument("--scrypt-shares", type=int, default=25_600)
    parser.add_argument("--connections", type=int, default=8, help="for sha256d")
    parser.add_argument("--scrypt-connections", default="8,64",
                        help="comma-separated connection counts to measure scrypt with")
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    sha_raw = raw_rate("sha256d", 3.0, 1)
    sha = asyncio.run(measure("sha256d", args.shares, args.connections))
    rows = [{"measure": f"sha256d, {args.connections} connections",
             "raw hashes/s": sha_raw, "valid shares/s": sha["rate"],
             "share/raw %": 100 * sha["rate"] / sha_raw, "target": ">= 20,000 shares/s",
             "rejected": sha["rejected"]}]
    results: dict = {"sha256d": sha, "sha256d_raw": sha_raw, "scrypt": {}}
    for connections in (int(c) for c in args.scrypt_connections.split(",")):
        # The ceiling: the bare hash on one thread per core, measured right before and
        # right after (the machine is shared), the higher of the two.
        before = raw_rate("scrypt", 4.0, cores)
        scrypt = asyncio.run(measure("scrypt", args.scrypt_shares, connections))
        scrypt_raw = max(before, raw_rate("scrypt", 4.0, cores))
        results["scrypt"][connections] = {**scrypt, "raw": scrypt_raw}
        rows.append({"measure": f"scrypt, {connections} connections, {cores} workers",
                     "raw hashes/s": scrypt_raw, "valid shares/s": scrypt["rate"],
                     "share/raw %": 100 * scrypt["rate"] / scrypt_raw,
                     "target": ">= 85 % of raw", "rejected": scrypt["rejected"]})
    report("shares_per_second", "Valid shares per second through the stratum path", rows,
           results)


if __name__ == "__main__":
    main()
