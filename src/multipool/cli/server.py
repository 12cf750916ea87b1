"""`multipool init|run|status|start|stop|restart`: the server as a whole."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from multipool.cli.coin import UnitDirOption
from multipool.cli.common import (
    DEFAULT,
    DryRunOption,
    JsonOption,
    RootOption,
    changing,
    console,
    reported_errors,
)
from multipool.cli.exits import exit_logged
from multipool.cli.logs import setup_logging
from multipool.config import CoinConfig, format_coins, load_coin_config, load_server_config
from multipool.errors import ConfigError
from multipool.ops import systemd
from multipool.ops.coins import coin_services
from multipool.ops.layout import Layout
from multipool.ops.plan import apply_changes
from multipool.ops.restarts import read_run_state, restart_changes, run_file
from multipool.ops.server import init_changes, open_layout
from multipool.ops.services import ServiceSpec
from multipool.ops.status import CoinStatus, server_status
from multipool.ops.supervisor import Supervisor
from multipool.ops.web import APACHE_DIR, NGINX_DIR, web_service
from multipool.web.display import plural, window_text


def init(
    root: RootOption = DEFAULT,
    mode: Annotated[str, typer.Option(help="system (root: users, packages) or local")]
    = "system",
    unit_dir: UnitDirOption = systemd.UNIT_DIR,
    nginx_dir: Annotated[Path, typer.Option("--nginx-dir", hidden=True,
                                            help="nginx's configuration directory")]
    = NGINX_DIR,
    apache_dir: Annotated[Path, typer.Option("--apache-dir", hidden=True,
                                             help="Apache's configuration directory")]
    = APACHE_DIR,
    dry_run: DryRunOption = False,
    json_out: JsonOption = False,
) -> None:
    """Create the server tree and multipool.toml (system mode: users, packages, the web
    service and its nginx or Apache site, and the nightly backup timer too)."""
    with reported_errors():
        if mode not in ("system", "local"):
            raise ConfigError(f"must be system or local, got {mode!r}", key="--mode")
        layout = Layout(root.resolve(), mode)
        with changing(layout.root, f"multipool init --mode {mode}", dry_run=dry_run):
            plan = init_changes(layout, unit_dir=unit_dir, nginx_dir=nginx_dir,
                                apache_dir=apache_dir)
            if layout.config_file.exists():  # the web process, if [web] settings changed
                server = load_server_config(layout.config_file)
                plan += restart_changes(layout, [web_service(layout, server)])
            apply_changes(plan, console=console, dry_run=dry_run, as_json=json_out,
                          title=f"init {layout.root} ({mode})")


def coin_configs(layout: Layout, prefixes: list[str] | None = None) -> list[CoinConfig]:
    """The coins of the server (or the named ones, refused if unknown), validated."""
    known = layout.prefixes()
    chosen = prefixes or known
    for prefix in chosen:
        if prefix not in known:
            raise ConfigError(f"no coin {prefix!r} on this server (coins: "
                              f"{', '.join(known) or 'none'})", key="PREFIX")
    return [load_coin_config(layout.coin_file(prefix)) for prefix in chosen]


def server_services(layout: Layout, prefixes: list[str] | None = None) -> list[ServiceSpec]:
    """Every coin's services (or the named coins'), and the web process with all coins."""
    specs = [spec for config in coin_configs(layout, prefixes)
             for spec in coin_services(layout, config)]
    if not prefixes:
        specs.append(web_service(layout, load_server_config(layout.config_file)))
    return specs


def services_table(supervisor: Supervisor, began: float) -> Table:
    table = Table(title=f"multipool run: up {time.monotonic() - began:,.0f} s "
                  "(Ctrl-C stops everything)", title_justify="left")
    for column in ("service", "pid", "state", "starts"):
        table.add_column(column)
    for name, state in supervisor.states.items():
        colour = {"ready": "green", "starting": "yellow"}.get(state.status, "red")
        table.add_row(name, str(state.pid or "-"), f"[{colour}]{state.status}[/]",
                      str(state.starts))
    return table


async def _run(supervisor: Supervisor) -> None:
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:  # SIGHUP, from `coin add` after a change
        task = asyncio.create_task(supervisor.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    began = time.monotonic()
    task = asyncio.create_task(supervisor.run())
    try:
        if console.is_terminal:
            with Live(console=console, refresh_per_second=2) as live:
                while not task.done():
                    live.update(services_table(supervisor, began))
                    await asyncio.wait({task}, timeout=0.5)
        await task
    except asyncio.CancelledError:
        console.print("stopping every service ...")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def run(
    prefixes: Annotated[list[str] | None, typer.Argument(help="coins to run (default: all)")]
    = None,
    root: RootOption = DEFAULT,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run the coins' daemons and pool engines in the foreground (hosts without systemd),
    restarting what exits, until Ctrl-C or SIGTERM."""
    with exit_logged("multipool run", logging.getLogger("multipool.run")):
        _run_services(prefixes, root, log_level)


def _run_services(prefixes: list[str] | None, root: Path, log_level: str) -> None:
    with reported_errors():
        layout = open_layout(root.resolve())
        specs = server_services(layout, prefixes)
        if not layout.prefixes():
            raise ConfigError("no coins yet: add one with `multipool coin add NAME`",
                              key="PREFIX")
        running = read_run_state(layout)
        if running is not None:
            raise ConfigError(f"multipool run (pid {running.pid}) runs this server already: "
                              "stop it first (Ctrl-C or kill -TERM)", key="run")
        supervisor = Supervisor(specs, log_dir=layout.log,
                                loader=partial(server_services, layout, prefixes),
                                run_file=run_file(layout),
                                prefixes=tuple(prefixes) if prefixes else None)
    setup_logging(log_level)
    console.print(f"running {len(specs)} services; logs in {layout.log}; `coin add` "
                  "applies a coin's changes to them")
    asyncio.run(_run(supervisor))
    console.print("[green]stopped[/]")


def _coins(status: CoinStatus, decimals: int) -> str:
    return "-" if status.unpaid is None else format_coins(status.unpaid, decimals)


def status(
    root: RootOption = DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """Per coin: daemon, sync state, stratum, miners, hashrate, last block, unpaid, last
    payment, and the pool engine's services (degraded ones with their reasons)."""
    with reported_errors():
        layout = open_layout(root.resolve())
        configs = coin_configs(layout)
        statuses = asyncio.run(server_status(layout, configs))
    if json_out:
        typer.echo(json.dumps([s.as_json() for s in statuses], indent=2))
        return
    if not statuses:
        console.print("no coins yet: add one with `multipool coin add NAME`")
        return
    table = Table(title=f"multipool status: {layout.root}", title_justify="left")
    window = window_text(statuses[0].hashrate_window)
    for column in ("coin", "daemon", "blocks/headers", "peers", "stratum", "miners",
                   f"hashrate ({window})", "last block", "unpaid", "last payment",
                   "services"):
        table.add_column(column)
    for s, config in zip(statuses, configs, strict=True):
        daemon = ("[green]synced[/]" if s.synced else "[yellow]syncing[/]") if s.daemon_up \
            else "[red]down[/]"
        ports = ",".join(map(str, s.stratum_ports))
        table.add_row(
            f"{s.prefix} ({s.name} {s.network})", daemon,
            f"{s.blocks}/{s.headers}" if s.daemon_up else "-",
            plural(s.peers, "peer") if s.peers is not None else "-",
            f"[green]{ports}[/]" if s.stratum_listening else f"[red]{ports} closed[/]",
            "-" if s.miners is None else (
                plural(s.miners, "miner")
                + ("" if s.workers is None else f", {plural(s.workers, 'worker')}")),
            "-" if s.hashrate is None else f"{s.hashrate:,.1f} H/s",
            "-" if s.last_block_height is None
            else f"{s.last_block_height} {s.last_block_status}",
            _coins(s, config.network.decimals),
            "-" if s.last_payment_time is None
            else f"{s.last_payment_time} {s.last_payment_status}",
            _services_cell(s))
    console.print(table)
    for s in statuses:
        for name, health in s.degraded.items():
            since = f" since {health['since'][:19]}" if health["since"] else ""
            reason = f": {health['reason']}" if health["reason"] else ""
            console.print(f"[yellow]{s.prefix}:[/] {name} degraded{since}"
                          f"{escape(reason)}", soft_wrap=True, highlight=False)
        for problem in (s.daemon_error, s.database_error, s.status_error):
            if problem:
                console.print(f"[yellow]{s.prefix}:[/] {escape(problem)}", soft_wrap=True,
                              highlight=False)


def _services_cell(status: CoinStatus) -> str:
    if status.services is None:
        return "-"
    degraded = sorted(status.degraded)
    if not degraded:
        return "[green]ok[/]"
    return f"[yellow]{', '.join(degraded)} degraded[/]"


def _systemctl(action: str, prefixes: list[str] | None, root: Path,
               dry_run: bool = False) -> None:
    with reported_errors():
        layout = open_layout(root.resolve())
        names = [spec.name for spec in server_services(layout, prefixes)]
        if not systemd.systemd_running():
            raise ConfigError("systemd is not running on this host: use `multipool run`",
                              key=action)
        if action == "restart":
            systemd.restart(names)
            console.print(f"restarted {', '.join(names)}")
            return
        # start: enabled at boot and running; stop: stopped, still enabled at boot.
        plan = [change for name in names for change in systemd.service_state_changes(
            name, running=action == "start", enabled=True)]
        apply_changes(plan, console=console, dry_run=dry_run, as_json=False, title=action)


PrefixesArgument = Annotated[list[str] | None,
                             typer.Argument(help="coins (default: all)")]


def start(prefixes: PrefixesArgument = None, root: RootOption = DEFAULT,
          dry_run: DryRunOption = False) -> None:
    """Enable and start the coins' services (systemd)."""
    _systemctl("start", prefixes, root, dry_run)


def stop(prefixes: PrefixesArgument = None, root: RootOption = DEFAULT,
         dry_run: DryRunOption = False) -> None:
    """Stop the coins' services (systemd); they stay enabled at boot."""
    _systemctl("stop", prefixes, root, dry_run)


def restart(prefixes: PrefixesArgument = None, root: RootOption = DEFAULT) -> None:
    """Restart the coins' services (systemd)."""
    _systemctl("restart", prefixes, root)
