"""`multipool db ...`: the coin's accounting database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from multipool.accounting.database import create_engine, database_url
from multipool.accounting.migrate import upgrade
from multipool.config import load_coin_config
from multipool.errors import ConfigError

app = typer.Typer(help="Manage a coin's accounting database.", no_args_is_help=True)
console = Console(stderr=True)


async def _upgrade(url: str) -> tuple[str | None, str]:
    engine = create_engine(url)
    try:
        return await upgrade(engine)
    finally:
        await engine.dispose()


@app.command("upgrade")
def upgrade_command(
    coin: Annotated[Path, typer.Option("--coin", help="the coin's TOML file")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")]
    = False,
) -> None:
    """Create the database schema or bring it to this version's; a second run changes
    nothing."""
    try:
        config = load_coin_config(coin)
        url = database_url(config)
        before, after = asyncio.run(_upgrade(url))
    except ConfigError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if json_out:
        typer.echo(json.dumps({"database": config.coin.prefix, "before": before,
                               "after": after, "changed": before != after}))
    elif before == after:
        console.print(f"{config.coin.prefix}: database schema is current (revision {after}); "
                      "nothing to do")
    else:
        console.print(f"{config.coin.prefix}: database schema upgraded from "
                      f"{before or 'empty'} to revision {after}")
