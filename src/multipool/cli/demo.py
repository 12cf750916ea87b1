"""`multipool demo`: a local pool on regtest, from nothing to blocks found.

Starts two regtest litecoind nodes (joined, so getblocktemplate works), the pool engine
and the test miner in one directory, and shows blocks being found until Ctrl-C, which
stops everything it started. Until the server manager exists this is the main job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from multipool.chain.rpc import DaemonClient
from multipool.cli.logs import setup_logging
from multipool.devnet import RegtestNetwork, find_litecoind, free_port, regtest_coin_config
from multipool.engine import PoolEngine
from multipool.miner import StratumMiner
from multipool.stratum.sink import MemoryShareSink

console = Console(stderr=True)
# How long the engine and the miner get to stop before the demo goes on without them.
STOP_TIMEOUT = 15.0


def status_table(engine: PoolEngine, sink: MemoryShareSink, miner: StratumMiner, height: int,
                 began: float) -> Table:
    table = Table(title="multipool demo: litecoin regtest", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    accepted_blocks = [b for b in sink.blocks if b.accepted]
    elapsed = time.monotonic() - began
    table.add_row("chain height", str(height))
    table.add_row("blocks found by the pool", str(len(accepted_blocks)))
    table.add_row("last block", accepted_blocks[-1].hash_hex[:24] + "..."
                  if accepted_blocks else "-")
    table.add_row("shares accepted / rejected",
                  f"{sink.accepted} / {sink.rejected}")
    table.add_row("miner hashrate", f"{miner.hashes / max(elapsed, 1e-9):,.0f} H/s")
    table.add_row("stratum port", str(engine.server.bound_ports()[0]))
    table.add_row("running for", f"{elapsed:,.0f} s  (Ctrl-C stops everything)")
    return table


async def run_demo(net: RegtestNetwork, blocks: int | None) -> int:
    node = net.nodes[0]
    address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
    # One block from the daemon takes the chain out of initial block download.
    if node.rpc("getblockcount") == 0:
        node.rpc("generatetoaddress", 1, address)
    config = regtest_coin_config(node, address=address, port=free_port(),
                                 difficulty=0.0001, name="demo coin")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with DaemonClient(node.rpc_url, user=node.rpc_user,
                            password=node.rpc_password) as daemon:
        sink = MemoryShareSink()
        engine = PoolEngine(config=config, daemon=daemon, sink=sink)
        engine_task = asyncio.create_task(engine.run())
        listening = asyncio.create_task(engine.server.listening.wait())
        await asyncio.wait({engine_task, listening}, return_when=asyncio.FIRST_COMPLETED)
        if engine_task.done():
            listening.cancel()
            engine_task.result()  # the engine failed to start: raise its error
            return 0
        port = engine.server.bound_ports()[0]
        miner = StratumMiner(host="127.0.0.1", port=port, username=f"{address}.demo",
                             algorithm="scrypt")
        miner_task = asyncio.create_task(miner.run())
        began = time.monotonic()
        start_blocks = 0
        try:
            with Live(console=console, refresh_per_second=2,
                      transient=False) as live:
                while not stop.is_set():
                    height = await daemon.getblockcount()
                    live.update(status_table(engine, sink, miner, height, began))
                    found = sum(b.accepted for b in sink.blocks) - start_blocks
                    if blocks is not None and found >= blocks:
                        break
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            await stop.wait()
        finally:
            console.print()
            miner.stop()
            tasks = {miner_task, engine_task}
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if pending:
                console.print(f"[yellow]warning:[/] {len(pending)} task(s) did not stop "
                              f"within {STOP_TIMEOUT:g} s")
        return sum(b.accepted for b in sink.blocks)


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="where the demo keeps its nodes")]
    = Path("demo"),
    blocks: Annotated[int | None, typer.Option(help="stop after this many pool blocks")]
    = None,
    fresh: Annotated[bool, typer.Option(help="start from an empty chain")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")]
    = "warning",
) -> None:
    """Run a local pool on Litecoin regtest: two nodes, the engine and a CPU miner."""
    if find_litecoind() is None:
        console.print("[red]error:[/] litecoind not found: run `make setup` (installs the "
                      "Debian package litecoind) or set MULTIPOOL_LITECOIND")
        raise typer.Exit(2)
    setup_logging(log_level)
    if fresh and directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    console.print(f"starting two regtest litecoind nodes in [bold]{directory}[/] ...")
    with RegtestNetwork(directory.resolve(), nodes=2) as net:
        console.print("nodes up and joined; starting the pool engine and the miner")
        found = asyncio.run(run_demo(net, blocks))
        console.print("stopping the nodes ...")
    console.print(f"[green]done:[/] the pool found {found} blocks; everything stopped")
    logging.shutdown()
