"""`multipool pool ...`: run one coin's pool engine."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from multipool.accounting.database import (
    create_engine,
    database_url,
    spool_directory,
    state_directory,
)
from multipool.accounting.migrate import upgrade
from multipool.accounting.payments import PaymentProcessor
from multipool.accounting.rounds import RewardPolicy
from multipool.accounting.stats import StatsRoller
from multipool.accounting.tracker import BlockTracker
from multipool.accounting.writer import ShareWriter
from multipool.chain.rpc import DaemonClient
from multipool.chain.wallet import ensure_wallet, kept_address
from multipool.cli.logs import setup_logging
from multipool.config import CoinConfig, load_coin_config, with_pool_address
from multipool.engine import PoolEngine
from multipool.errors import ConfigError
from multipool.public_status import PublicStatusWriter

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
    """Bring the database schema up to date, then run the engine with its share writer
    until SIGINT/SIGTERM, and shut down cleanly (buffered shares are flushed)."""
    d = config.daemon
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    database = create_engine(database_url(config))
    try:
        before, after = await upgrade(database)
        if before != after:
            logger.info("database schema upgraded from %s to %s", before or "empty", after)
        writer = ShareWriter(engine=database, spool_dir=spool_directory(config),
                             logger=logger.getChild("shares"))
        async with DaemonClient(d.rpc_url, user=d.rpc_user, password=d.rpc_password,
                                cookie_file=d.rpc_cookie, wallet=d.wallet) as daemon:
            if d.wallet is not None:
                await ensure_wallet(daemon, d.wallet, logger)
            if config.pool.address is None:
                if d.wallet is None:
                    raise ConfigError("needs [daemon] wallet to take an address from",
                                      file=config.path, key="pool.address")
                address = await kept_address(daemon, state_directory(config), logger)
                config = with_pool_address(config, address)
            if config.coin.network == "regtest" and await daemon.getblockcount() == 0:
                # An empty regtest chain stays in initial block download, which gives no
                # block template and keeps the stratum ports closed.
                assert config.pool.address is not None
                await daemon.generatetoaddress(1, config.pool.address)
                logger.info("regtest chain was empty: mined block 1 to leave initial "
                            "block download")
            tracker = BlockTracker(engine=database, daemon=daemon,
                                   policy=RewardPolicy.from_config(config),
                                   maturity=config.network.coinbase_maturity,
                                   pool_tag=config.stratum.pool_tag.encode(),
                                   payout_script=config.payout_script,
                                   spool_pending=writer.spool.files,
                                   logger=logger.getChild("blocks"))
            writer.on_block = tracker.wake  # a found block's snapshot is written at once
            payer = PaymentProcessor.from_config(config, engine=database, wallet=daemon,
                                                 logger=logger.getChild("payments"))
            stats = StatsRoller(database, logger=logger.getChild("stats"))
            background: list[Callable[[], Coroutine[Any, Any, None]]] = [
                writer.run, tracker.run, stats.run,
                partial(payer.run, config.pool.payment_interval)]
            engine = PoolEngine(config=config, daemon=daemon, sink=writer,
                                background=background)
            if config.pool.public_dir is not None:
                public = PublicStatusWriter(config=config, database=database, engine=engine,
                                            directory=Path(config.pool.public_dir),
                                            logger=logger.getChild("public"))
                engine.background += (public.run,)
            try:
                await engine.run()
            except asyncio.CancelledError:
                pass
    finally:
        await database.dispose()


@app.command("serve")
def serve(
    coin: Annotated[Path, typer.Option("--coin", help="the coin's TOML file")],
    allow_root: Annotated[bool, typer.Option(help="run even as root")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run one coin's pool engine in the foreground until Ctrl-C or SIGTERM."""
    refuse_root(allow_root)
    try:
        config = load_coin_config(coin)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    setup_logging(log_level)
    asyncio.run(run_engine(config))
