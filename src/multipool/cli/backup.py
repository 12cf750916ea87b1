"""`multipool backup`: one archive of every coin's config, wallet and database."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from multipool.cli.common import DEFAULT, JsonOption, RootOption, console, reported_errors
from multipool.ops.backup import DEFAULT_KEEP, BackupReport, backup_server
from multipool.ops.server import open_layout


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _show(report: BackupReport) -> None:
    table = Table(title=f"backup {report.archive} ({_size(report.size)})",
                  title_justify="left")
    for column in ("coin", "saved", "failed"):
        table.add_column(column)
    for coin in report.coins:
        saved = ", ".join(part.name.split("/", 1)[1] for part in coin.parts) or "-"
        failed = "\n".join(coin.errors)
        table.add_row(coin.prefix, saved, f"[red]{failed}[/]" if failed else "-")
    console.print(table)
    for path in report.removed:
        console.print(f"deleted old archive {path}", highlight=False)


def backup(
    prefixes: Annotated[list[str] | None, typer.Argument(help="coins (default: all)")]
    = None,
    root: RootOption = DEFAULT,
    keep: Annotated[int, typer.Option(
        min=1, help="after a run where nothing failed, delete the oldest archives "
                    "beyond this many")] = DEFAULT_KEEP,
    daemon_wait: Annotated[float, typer.Option(
        min=0, help="seconds to wait for a daemon that does not answer")] = 10.0,
    json_out: JsonOption = False,
) -> None:
    """Back up multipool.toml and, per coin, coin.toml, the daemon config, the wallet
    (online, over RPC) and the pool database into backup/multipool-<time>.tar.gz.
    Exit code 1 when any part failed (the archive has everything else)."""
    with reported_errors():
        layout = open_layout(root.resolve())
        if console.is_terminal and not json_out:
            with console.status("backing up ...") as status:
                report = backup_server(layout, prefixes, keep=keep,
                                       retry_for=daemon_wait,
                                       progress=lambda message: status.update(message))
        else:
            report = backup_server(layout, prefixes, keep=keep, retry_for=daemon_wait)
    if json_out:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        _show(report)
    if not report.ok:
        for error in report.errors:
            console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if not json_out:
        console.print(f"[green]done:[/] {report.archive}", highlight=False)
