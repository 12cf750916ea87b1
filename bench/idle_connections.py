"""10,000 idle miners on one engine: memory, and the time to push a new job to all.

The pool runs in a child process (so its RSS is its own); this process opens the
connections, subscribes and authorizes each, then asks the pool to move to a new block
and records when each connection receives the clean job. Latency is measured from the
moment the pool published the job (its own monotonic clock, shared by both processes on
Linux) to the moment each miner read it.

Run: .venv/bin/python bench/idle_connections.py [--connections N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import statistics
import time

from _common import report, start_bench_pool


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def rss_mb(pid: str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pool_process(conn, connections: int) -> None:
    raise_fd_limit(connections + 1000)

    async def run() -> None:
        daemon, _, server, task = await start_bench_pool(
            algorithm="sha256d", difficulty=1, max_connections=connections + 100)
        published: list[float] = []
        original = server.broadcast

        def timed_broadcast(job):
            published.append(time.monotonic())
            original(job)
            published.append(time.monotonic())

        server.broadcast = timed_broadcast  # type: ignore[method-assign]
        conn.send(("port", server.bound_ports()[0], rss_mb()))
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "rss":
                conn.send(("rss", len(server.sessions), rss_mb()))
            elif command == "newblock":
                published.clear()
                daemon.new_block()
                while len(published) < 2:
                    await asyncio.sleep(0.001)
                conn.send(("published", published[0], published[1]))
            elif command == "stop":
                break
        task.cancel()
        await server.close()

    asyncio.run(run())


class Miner(asyncio.Protocol):
    def __init__(self, ready: asyncio.Future, index: int):
        self.ready = ready
        self.index = index
        self.buffer = b""
        self.jobs = 0
        self.clean_job_at: float | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b'{"id":1,"method":"mining.subscribe","params":[]}\n'
                        + json.dumps({"id": 2, "method": "mining.authorize",
                                      "params": [f"idle.{self.index}", "x"]}).encode()
                        + b"\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if b'"method":"mining.notify"' in line:
                self.jobs += 1
                if self.jobs == 1 and not self.ready.done():
                    self.ready.set_result(None)
                elif self.jobs > 1 and self.clean_job_at is None:
                    self.clean_job_at = time.monotonic()


async def drive(conn, connections: int) -> dict:
    _, port, rss_start = conn.recv()
    loop = asyncio.get_running_loop()
    miners: list[Miner] = []
    began = time.monotonic()
    for i in range(connections):
        ready = loop.create_future()
        miner = Miner(ready, i)
        await loop.create_connection(lambda m=miner: m, "127.0.0.1", port)
        miners.append(miner)
        if i % 500 == 499:
            await asyncio.gather(*(m.ready for m in miners[-500:]))
    await asyncio.gather(*(m.ready for m in miners))
    connect_seconds = time.monotonic() - began
    await asyncio.sleep(2)
    conn.send("rss")
    _, sessions, rss_idle = conn.recv()
    conn.send("newblock")
    _, published_start, published_end = await loop.run_in_executor(None, conn.recv)
    deadline = time.monotonic() + 30
    while any(m.clean_job_at is None for m in miners) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    latencies = sorted((m.clean_job_at - published_start) * 1000 for m in miners
                       if m.clean_job_at is not None)
    for m in miners:
        if m.transport:
            m.transport.close()
    conn.send("stop")
    return {
        "connections": connections, "sessions_on_pool": sessions,
        "connect_seconds": connect_seconds, "rss_start_mb": rss_start,
        "rss_idle_mb": rss_idle, "received": len(latencies),
        "broadcast_loop_ms": (published_end - published_start) * 1000,
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] if latencies else None,
        "max_ms": latencies[-1] if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args()
    raise_fd_limit(args.connections + 1000)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=pool_process, args=(child, args.connections))
    proc.start()
    try:
        result = asyncio.run(drive(parent, args.connections))
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    rows = [
        {"measure": "pool RSS with all connected (MB)", "value": result["rss_idle_mb"],
         "target": "< 600"},
        {"measure": "new job to all: p50 (ms)", "value": result["p50_ms"], "target": ""},
        {"measure": "new job to all: p99 (ms)", "value": result["p99_ms"], "target": "< 250"},
        {"measure": "new job to all: max (ms)", "value": result["max_ms"], "target": ""},
        {"measure": "broadcast loop in pool (ms)", "value": result["broadcast_loop_ms"],
         "target": ""},
        {"measure": "miners that got the job", "value": result["received"],
         "target": str(result["connections"])},
    ]
    report("idle_connections", f"{result['connections']:,} idle miner connections", rows,
           result)


if __name__ == "__main__":
    main()
