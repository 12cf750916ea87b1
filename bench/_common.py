"""Shared parts of the benchmarks: an in-process pool on a scripted template source,
result tables and JSON output."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.support.fake_daemon import FakeTemplateDaemon  # noqa: E402
from tests.support.live_pool import get, web_process  # noqa: E402, F401 - for the benches

from multipool.chain.pow import ALGORITHMS  # noqa: E402
from multipool.config import PortConfig, StratumSection  # noqa: E402
from multipool.stratum.jobs import JobManager  # noqa: E402
from multipool.stratum.server import StratumServer  # noqa: E402
from multipool.stratum.session import SessionLimits  # noqa: E402
from multipool.stratum.sink import MemoryShareSink  # noqa: E402

RESULTS = ROOT / "bench" / "results"


async def start_bench_pool(*, algorithm: str, difficulty: float, bits: str = "1d00ffff",
                           limits: SessionLimits | None = None, max_connections: int = 20000):
    """A stratum server on a scripted template source (bits 0x1d00ffff: no share is a
    block, so only the share path is measured)."""
    daemon = FakeTemplateDaemon(bits=bits)
    sink = MemoryShareSink()
    config = StratumSection(
        host="127.0.0.1",
        ports=(PortConfig(port=0, difficulty=difficulty, vardiff=False,
                          min_difficulty=1e-12, max_difficulty=1e12),),
        max_connections=max_connections, max_connections_per_ip=max_connections,
        ban_seconds=0)
    server: StratumServer
    jobs = JobManager(daemon=daemon, rules=("segwit",), payout_script=bytes(22),
                      extranonce_size=8, pool_tag=b"/bench/",
                      on_job=lambda job: server.broadcast(job))
    server = StratumServer(config=config, algorithm=ALGORITHMS[algorithm], jobs=jobs,
                           sink=sink, submitter=daemon, check_address=lambda a: None,
                           limits=limits)
    task = asyncio.create_task(jobs.run())
    await asyncio.wait_for(jobs.first_job.wait(), 5)
    await server.start()
    return daemon, sink, server, task


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime())}


def report(name: str, title: str, rows: list[dict[str, Any]], extra: dict[str, Any]) -> Path:
    """Print rows as a table and write them with the machine facts to results/NAME.json."""
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column, justify="right" if column != "measure" else "left")
    for row in rows:
        table.add_row(*(f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), "rows": rows,
                               **extra}, indent=2))
    print(f"wrote {path}")
    return path
