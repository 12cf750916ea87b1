"""`multipool payments ...`: pay miners, pause and resume payments, show what is owed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.database import create_engine, database_url
from multipool.accounting.migrate import upgrade
from multipool.accounting.payments import PaymentProcessor, is_paused, set_paused
from multipool.accounting.rewards import POOL_FEE
from multipool.accounting.schema import balances, payment_batches
from multipool.chain.rpc import DaemonClient, DaemonError
from multipool.cli.logs import setup_logging
from multipool.config import CoinConfig, format_coins, load_coin_config, to_units
from multipool.errors import ConfigError

app = typer.Typer(help="Pay miners and manage a coin's payments.", no_args_is_help=True)
console = Console(stderr=True)
CoinOption = Annotated[Path, typer.Option("--coin", help="the coin's TOML file")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]
T = TypeVar("T")


def _config(coin: Path) -> CoinConfig:
    try:
        return load_coin_config(coin)
    except ConfigError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _with_database(config: CoinConfig, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = create_engine(database_url(config))
        try:
            await upgrade(engine)
            return await work(engine)
        finally:
            await engine.dispose()
    try:
        return asyncio.run(main())
    except DaemonError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


@app.command("run")
def run_command(coin: CoinOption, json_out: JsonOption = False,
                log_level: Annotated[str, typer.Option(help="debug, info, warning or error")]
                = "warning",
                reconcile_grace: Annotated[float, typer.Option(
                    min=0, help="seconds an unfinished batch must be old before a missing "
                                "wallet transaction means it was never sent")] = 60.0,
                ) -> None:
    """Reconcile unfinished batches, then pay every miner at or above min_payout, once."""
    config = _config(coin)
    setup_logging(log_level)
    d = config.daemon

    async def work(engine: AsyncEngine) -> Any:
        async with DaemonClient(d.rpc_url, user=d.rpc_user, password=d.rpc_password,
                                cookie_file=d.rpc_cookie, wallet=d.wallet,
                                retry_for=30) as wallet:
            payer = PaymentProcessor.from_config(config, engine=engine, wallet=wallet)
            payer.reconcile_grace = timedelta(seconds=reconcile_grace)
            return await payer.run_once()
    report = _with_database(config, work)
    if json_out:
        typer.echo(json.dumps(dataclasses.asdict(report)))
    else:
        colour = {"paid": "green", "nothing_due": "green", "stopped": "red"}.get(
            report.status, "yellow")
        console.print(f"{config.coin.prefix}: [{colour}]{report.status}[/] {report.message}")
        if report.reconciled_sent or report.reconciled_failed:
            console.print(f"reconciled unfinished batches: {report.reconciled_sent} were sent, "
                          f"{report.reconciled_failed} never left the wallet (credited back)")
    if report.status == "stopped":
        raise typer.Exit(1)


@app.command("pause")
def pause_command(coin: CoinOption) -> None:
    """Stop paying this coin's miners until `payments resume` (balances keep growing)."""
    config = _config(coin)
    _with_database(config, lambda engine: set_paused(engine, True))
    console.print(f"{config.coin.prefix}: payments paused")


@app.command("resume")
def resume_command(coin: CoinOption) -> None:
    """Pay this coin's miners again."""
    config = _config(coin)
    _with_database(config, lambda engine: set_paused(engine, False))
    console.print(f"{config.coin.prefix}: payments resumed")


@app.command("status")
def status_command(coin: CoinOption, json_out: JsonOption = False) -> None:
    """Show whether payments run, what is owed and the latest batches."""
    config = _config(coin)
    decimals = config.network.decimals
    threshold = to_units(config.pool.min_payout, decimals)

    async def work(engine: AsyncEngine) -> dict[str, Any]:
        async with engine.connect() as connection:
            owed = (await connection.execute(
                select(func.count(), func.coalesce(func.sum(balances.c.amount), 0))
                .where(balances.c.address != POOL_FEE, balances.c.amount > 0))).one()
            due = (await connection.execute(
                select(func.count(), func.coalesce(func.sum(balances.c.amount), 0))
                .where(balances.c.address != POOL_FEE,
                       balances.c.amount >= threshold))).one()
            batches = (await connection.execute(
                select(payment_batches.c.id, payment_batches.c.created,
                       payment_batches.c.status, payment_batches.c.total,
                       payment_batches.c.txid)
                .order_by(payment_batches.c.created.desc()).limit(10))).all()
        return {"coin": config.coin.prefix, "paused": await is_paused(engine),
                "miners_owed": owed[0], "owed": int(owed[1]), "miners_due": due[0],
                "due": int(due[1]), "min_payout": threshold,
                "batches": [{"id": b.id, "created": str(b.created), "status": b.status,
                             "total": int(b.total), "txid": b.txid} for b in batches]}
    status = _with_database(config, work)
    if json_out:
        typer.echo(json.dumps(status))
        return
    out = Console()
    state = "[yellow]paused[/]" if status["paused"] else "[green]running[/]"
    out.print(f"{config.coin.prefix}: payments {state}; owed "
              f"{format_coins(status['owed'], decimals)} to {status['miners_owed']} miner(s), "
              f"{format_coins(status['due'], decimals)} to {status['miners_due']} at or above "
              f"min_payout {format_coins(threshold, decimals)}", soft_wrap=True)
    if status["batches"]:
        table = Table("batch", "created", "status", "total", "txid")
        for b in status["batches"]:
            table.add_row(b["id"], b["created"][:19], b["status"],
                          format_coins(b["total"], decimals), b["txid"] or "")
        out.print(table)
