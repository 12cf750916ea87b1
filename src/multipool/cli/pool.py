"""`multipool pool ...`: run one coin's pool engine (composed in engine.run_pool)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from multipool.cli.exits import exit_logged
from multipool.cli.logs import setup_logging
from multipool.config import CoinConfig, load_coin_config
from multipool.engine import run_pool
from multipool.errors import ConfigError

app = typer.Typer(help="Run a coin's pool engine.", no_args_is_help=True)
logger = logging.getLogger("multipool.pool")


def refuse_root(allow_root: bool, user: str = "the coin's pool user") -> None:
    """Exit with a message when running as root without --allow-root: a pool engine or
    the web process reads hostile network input and has no business holding root's
    rights."""
    if os.geteuid() == 0 and not allow_root:
        typer.secho(f"refusing to run as root: run as {user}, or pass --allow-root if "
                    "you really mean it", fg="red", err=True)
        raise typer.Exit(2)


async def run_engine(config: CoinConfig) -> None:
    """Run the pool engine until SIGINT/SIGTERM, then shut down cleanly (buffered shares
    are flushed)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await run_pool(config, logger=logger)


@app.command("serve")
def serve(
    coin: Annotated[Path, typer.Option("--coin", help="the coin's TOML file")],
    allow_root: Annotated[bool, typer.Option(help="run even as root")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run one coin's pool engine in the foreground until Ctrl-C or SIGTERM."""
    with exit_logged(f"pool engine for {coin}", logger):
        refuse_root(allow_root)
        try:
            config = load_coin_config(coin)
        except ConfigError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        setup_logging(log_level)
        asyncio.run(run_engine(config))
