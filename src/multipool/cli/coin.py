"""`multipool coin add|remove|list`: the coins of the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from multipool.catalog import CoinDefinition, catalog_names, load_definition
from multipool.cli.common import (
    DEFAULT,
    DryRunOption,
    JsonOption,
    RootOption,
    changing,
    console,
    reported_errors,
)
from multipool.config import PREFIX_CHARS, CoinConfig, load_coin_config, load_server_config
from multipool.errors import ConfigError
from multipool.ops import systemd
from multipool.ops.changes import Change
from multipool.ops.coins import CoinRequest, coin_add_changes, coin_remove_changes, coin_services
from multipool.ops.layout import Layout
from multipool.ops.plan import apply_changes
from multipool.ops.restarts import restart_changes, supervisor_changes
from multipool.ops.server import open_layout

app = typer.Typer(help="Add, remove and list the server's coins.", no_args_is_help=True)

UnitDirOption = Annotated[Path, typer.Option(
    "--unit-dir", help="where systemd units go (system mode)", hidden=True)]


def check_prefix(prefix: str) -> None:
    if not (prefix and set(prefix) <= PREFIX_CHARS and len(prefix) <= 16
            and prefix[0].isalpha()):
        raise ConfigError(f"must be 1-16 lowercase letters and digits starting with a "
                          f"letter, got {prefix!r}", key="--prefix")


def unit_changes(layout: Layout, config: CoinConfig, unit_dir: Path) -> list[Change]:
    """System mode: the coin's systemd units, written (not started) for `multipool start`."""
    if not layout.system:
        return []
    units = {f"{spec.name}.service": systemd.render_service(spec)
             for spec in coin_services(layout, config)}
    return systemd.install_units(units, unit_dir)


@app.command("add")
def add(
    coin: Annotated[str, typer.Argument(help="a catalogue name (see `coin list "
                                             "--catalogue`), the path of a coin TOML, or the "
                                             "prefix of a coin to apply its coin.toml again")],
    prefix: Annotated[str | None, typer.Option(help="the coin's id on this server "
                                                    "(default: the definition's)")] = None,
    network: Annotated[str | None, typer.Option(help="main, test or regtest (default: "
                                                     "main)")] = None,
    address: Annotated[str | None, typer.Option(
        help="pool wallet address for coinbases (default: one from the daemon's wallet)")]
    = None,
    stratum_port: Annotated[int | None, typer.Option(help="stratum port (default: the "
                                                          "definition's, or the next free)")]
    = None,
    root: RootOption = DEFAULT,
    unit_dir: UnitDirOption = systemd.UNIT_DIR,
    dry_run: DryRunOption = False,
    json_out: JsonOption = False,
) -> None:
    """Add a coin: users, directories, daemon, daemon config, coin.toml, services. Run it
    again after editing coin/<prefix>/coin.toml to apply the edit."""
    with reported_errors():
        if network not in (None, "main", "test", "regtest"):
            raise ConfigError(f"must be main, test or regtest, got {network!r}",
                              key="--network")
        layout = open_layout(root.resolve())
        with changing(layout.root, f"multipool coin add {coin}", dry_run=dry_run):
            definition: CoinDefinition | None
            if coin in layout.prefixes() and prefix in (None, coin):
                definition, chosen = None, coin  # `coin add PREFIX`: apply coin.toml again
            else:
                definition = load_definition(coin)
                chosen = prefix or definition.prefix
            check_prefix(chosen)
            server = load_server_config(layout.config_file)
            request = CoinRequest(definition=definition, prefix=chosen, network=network,
                                  address=address, stratum_port=stratum_port,
                                  database_admin=server.database)
            existed = layout.coin_file(chosen).exists()
            config, plan = coin_add_changes(layout, request)
            plan += unit_changes(layout, config, unit_dir)
            # Last, once every file is in place: what runs an older configuration
            # restarts.
            plan += restart_changes(layout, coin_services(layout, config))
            apply_changes(plan, console=console, dry_run=dry_run, as_json=json_out,
                          title=f"coin add {chosen}")
            if existed and definition is not None and not json_out:
                console.print(f"note: {chosen} was added before: its "
                              f"{layout.coin_file(chosen)} was applied; the definition "
                              f"{coin!r} only shapes a new coin (edit coin.toml to change "
                              "this one)", highlight=False, soft_wrap=True)


@app.command("remove")
def remove(
    prefix: Annotated[str, typer.Argument(help="the coin's prefix")],
    delete_wallet: Annotated[bool, typer.Option(
        "--delete-wallet", help="also delete the wallet and the pool's database (the "
                                "coins and the record of what miners are owed)")] = False,
    root: RootOption = DEFAULT,
    unit_dir: UnitDirOption = systemd.UNIT_DIR,
    dry_run: DryRunOption = False,
    json_out: JsonOption = False,
) -> None:
    """Stop and remove a coin, keeping its wallet and pool database unless told."""
    with reported_errors():
        layout = open_layout(root.resolve())
        with changing(layout.root, f"multipool coin remove {prefix}", dry_run=dry_run):
            plan: list[Change] = []
            names: list[str] = []
            if layout.coin_file(prefix).exists():
                config = load_coin_config(layout.coin_file(prefix))
                names = [spec.name for spec in coin_services(layout, config)]
            if layout.system:
                plan += systemd.remove_units(names, unit_dir)
            # A `multipool run` of this server stops the coin's services once its coin.toml
            # is gone, and before its wallet is deleted.
            plan += coin_remove_changes(layout, prefix, delete_wallet=delete_wallet,
                                        then=supervisor_changes(layout, [], removed=names))
            apply_changes(plan, console=console, dry_run=dry_run, as_json=json_out,
                          title=f"coin remove {prefix}")
            if not delete_wallet and not json_out:
                console.print(f"kept {layout.wallet_dir(prefix)} and "
                              f"{layout.pool_dir(prefix)}")


@app.command("list")
def list_coins(
    catalogue: Annotated[bool, typer.Option("--catalogue", help="list the shipped coin "
                                                                "definitions instead")] = False,
    root: RootOption = DEFAULT,
    json_out: JsonOption = False,
) -> None:
    """List the server's coins (or the catalogue's)."""
    data: list[dict[str, object]]
    with reported_errors():
        if catalogue:
            rows = [load_definition(name) for name in catalog_names()]
            data = [{"name": d.name, "prefix": d.prefix, "symbol": d.symbol,
                     "algorithm": d.algorithm, "source": d.source} for d in rows]
        else:
            layout = open_layout(root.resolve())
            configs = [load_coin_config(layout.coin_file(p)) for p in layout.prefixes()]
            data = [{"prefix": c.coin.prefix, "name": c.coin.name, "network": c.coin.network,
                     "stratum": [p.port for p in c.stratum.ports],
                     "coin_file": c.path} for c in configs]
    if json_out:
        typer.echo(json.dumps(data, indent=2))
        return
    if not data:
        console.print("no coins yet: add one with `multipool coin add NAME`")
        return
    table = Table(*data[0].keys())
    for row in data:
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)
