"""`multipool demo`: the main job, as an operator would do it, on one machine.

In a local root (``--dir``, ``demo/`` by default) it runs ``init --mode local``, adds two
Litecoin regtest coins (``ltca`` and ``ltcb``, each with its own pair of nodes), runs
their services as ``multipool run`` does, and points a CPU test miner at each pool's
stratum port, showing the blocks each pool finds and records until Ctrl-C stops
everything (or ``--blocks N`` blocks per pool are recorded): a live table on a terminal,
plain progress lines on standard output when it is a file or a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from multipool.accounting.schema import CANDIDATE
from multipool.catalog import load_definition
from multipool.chain.address import encode_segwit_address
from multipool.cli.common import console
from multipool.cli.logs import setup_logging
from multipool.cli.server import server_services
from multipool.config import CoinConfig, load_coin_config, load_server_config
from multipool.devnet import find_litecoind, free_port
from multipool.miner import StratumMiner
from multipool.ops.changes import Change
from multipool.ops.coins import CoinRequest, coin_add_changes
from multipool.ops.daemon_conf import port_free
from multipool.ops.layout import Layout
from multipool.ops.server import init_changes
from multipool.ops.status import port_listening
from multipool.ops.supervisor import Supervisor
from multipool.web.display import plural

PREFIXES = ("ltca", "ltcb")
WEB_PORT = 8080
# How long the pools get to open their stratum ports (daemons start, sync, first job).
OPEN_TIMEOUT = 120.0


def recorded_blocks(config: CoinConfig) -> int:
    """The blocks the pool recorded, read from its SQLite database (0 before it exists)."""
    assert config.pool.database is not None
    path = Path(config.pool.database.removeprefix("sqlite:///"))
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            return int(db.execute("SELECT count(*) FROM blocks WHERE status != ?",
                                  (CANDIDATE,)).fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def set_up(layout: Layout) -> list[CoinConfig]:
    """`init --mode local` and `coin add litecoin` twice, each change shown."""
    plan: list[Change] = init_changes(layout, install_packages=False)
    for change in plan:
        change.apply()
    console.print(f"init {layout.root}: {len(plan)} change(s)")
    if not port_free(WEB_PORT):  # the web page on another port, as an operator would set
        text = layout.config_file.read_text()
        layout.config_file.write_text(text.replace(f"127.0.0.1:{WEB_PORT}",
                                                   f"127.0.0.1:{free_port()}"))
    definition = load_definition("litecoin")
    for prefix in PREFIXES:
        request = CoinRequest(definition=definition, prefix=prefix, network="regtest",
                              stratum_host="127.0.0.1")
        _config, found = coin_add_changes(layout, request)
        for change in found:
            change.apply()
        console.print(f"coin add litecoin --prefix {prefix} --network regtest: "
                      f"{len(found)} change(s)")
    return [load_coin_config(layout.coin_file(prefix)) for prefix in PREFIXES]


def status_table(supervisor: Supervisor, configs: list[CoinConfig],
                 miners: dict[str, StratumMiner], began: float, web: str) -> Table:
    table = Table(title=f"multipool demo: two litecoin regtest pools, up "
                  f"{time.monotonic() - began:,.0f} s (Ctrl-C stops everything)",
                  title_justify="left",
                  caption=f"the pools' web page: http://{web}/", caption_justify="left")
    for column in ("pool", "stratum", "services", "miner shares", "blocks recorded"):
        table.add_column(column)
    for config in configs:
        prefix = config.coin.prefix
        states = [s for name, s in supervisor.states.items() if f"-{prefix}-" in name]
        ready = sum(s.status == "ready" for s in states)
        miner = miners.get(prefix)
        table.add_row(prefix, f"127.0.0.1:{config.stratum.ports[0].port}",
                      f"{ready}/{len(states)} ready",
                      f"{miner.accepted} accepted" if miner else "waiting for the port",
                      str(recorded_blocks(config)))
    return table


class ProgressLines:
    """Plain lines, one per event (a pool's services ready, its miner started, a block
    recorded), for output that is not a terminal: a file or a pipe gets the demo's progress
    as it happens, where a live table would show only at the end."""

    def __init__(self, write: Callable[[str], None]):
        self.write = write
        self.seen: dict[tuple[str, str], object] = {}

    def say(self, text: str) -> None:
        self.write(f"[{time.strftime('%H:%M:%S')}] {text}")

    def update(self, supervisor: Supervisor, configs: list[CoinConfig],
               miners: dict[str, StratumMiner]) -> None:
        for config in configs:
            prefix = config.coin.prefix
            states = [s for name, s in supervisor.states.items() if f"-{prefix}-" in name]
            ready = sum(s.status == "ready" for s in states)
            self._changed(prefix, "ready", ready,
                          f"{prefix}: {ready}/{len(states)} services ready")
            if prefix in miners:
                self._changed(prefix, "miner", True,
                              f"{prefix}: stratum 127.0.0.1:{config.stratum.ports[0].port} "
                              "open, a test miner mines on it")
            blocks = recorded_blocks(config)
            if blocks:
                self._changed(prefix, "blocks", blocks,
                              f"{prefix}: {plural(blocks, 'block')} recorded")

    def _changed(self, prefix: str, what: str, value: object, text: str) -> None:
        if self.seen.get((prefix, what)) != value:
            self.seen[(prefix, what)] = value
            self.say(text)


def _print_line(text: str) -> None:
    print(text, flush=True)  # the demo's progress, on standard output


async def run_demo(layout: Layout, configs: list[CoinConfig], blocks: int | None) -> int:
    supervisor = Supervisor(server_services(layout), log_dir=layout.log)
    web = load_server_config(layout.config_file).web_listen
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    services = asyncio.create_task(supervisor.run())
    miners: dict[str, StratumMiner] = {}
    miner_tasks: list[asyncio.Task[None]] = []
    began = time.monotonic()
    # A live table on a terminal; plain lines where the output goes to a file or a pipe.
    live = Live(console=console, refresh_per_second=2) if console.is_terminal else None
    lines = (ProgressLines(_print_line)
             if live is None or not sys.stdout.isatty() else None)
    if lines is not None:
        lines.say(f"the pools' web page: http://{web}/ (Ctrl-C stops everything)")
    try:
        with live if live is not None else contextlib.nullcontext():
            while not stop.is_set() and not services.done():
                for config in configs:
                    prefix, port = config.coin.prefix, config.stratum.ports[0].port
                    if prefix not in miners and await port_listening("127.0.0.1", port):
                        # A regtest address nobody holds: the demo pays no one.
                        address = encode_segwit_address("rltc", 0, os.urandom(20))
                        miner = StratumMiner(host="127.0.0.1", port=port,
                                             username=f"{address}.demo", algorithm="scrypt")
                        miners[prefix] = miner
                        miner_tasks.append(asyncio.create_task(miner.run()))
                if len(miners) < len(configs) and time.monotonic() - began > OPEN_TIMEOUT:
                    console.print(f"[red]error:[/] a pool did not open its stratum port in "
                                  f"{OPEN_TIMEOUT:.0f} s: see the logs in {layout.log}")
                    break
                if live is not None:
                    live.update(status_table(supervisor, configs, miners, began, web))
                if lines is not None:
                    lines.update(supervisor, configs, miners)
                if blocks is not None and all(recorded_blocks(c) >= blocks for c in configs):
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await stop.wait()
    finally:
        for miner in miners.values():
            miner.stop()
        if miner_tasks:
            await asyncio.wait(miner_tasks, timeout=15)
        console.print("\nstopping the pools and their nodes ...")
        services.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await services
    return min(recorded_blocks(config) for config in configs)


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="the demo server's root")]
    = Path("demo"),
    blocks: Annotated[int | None, typer.Option(help="stop once each pool recorded this "
                                                    "many blocks")] = None,
    fresh: Annotated[bool, typer.Option(help="start from an empty root")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")]
    = "warning",
) -> None:
    """Run two Litecoin regtest pools in a local root: init, coin add twice, run, and a
    CPU miner on each pool."""
    if find_litecoind() is None:
        console.print("[red]error:[/] litecoind not found: run `make setup` (installs the "
                      "Debian package litecoind)")
        raise typer.Exit(2)
    setup_logging(log_level)
    root = directory.resolve()
    if fresh and root.exists():
        shutil.rmtree(root)
    layout = Layout(root, "local")
    configs = set_up(layout)
    found = asyncio.run(run_demo(layout, configs, blocks))
    console.print(f"[green]done:[/] each pool recorded at least {plural(found, 'block')}; "
                  "everything stopped")
    logging.shutdown()
