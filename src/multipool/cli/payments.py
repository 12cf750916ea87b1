"""`multipool payments ...`: pay miners, pause and resume payments, show what is owed and
where each batch stands, and acknowledge wallet sends the database does not know."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting import bookkeeping, wallet_watch
from multipool.accounting.database import create_engine, database_url
from multipool.accounting.migrate import upgrade
from multipool.accounting.payment_tx import BuildError
from multipool.accounting.payments import (
    OPEN,
    PAUSED_BY_HAND,
    PaymentProcessor,
    adopt_send,
    is_paused,
    set_paused,
)
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
    except (DaemonError, BuildError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _wallet(config: CoinConfig) -> DaemonClient:
    d = config.daemon
    return DaemonClient(d.rpc_url, user=d.rpc_user, password=d.rpc_password,
                        cookie_file=d.rpc_cookie, wallet=d.wallet, retry_for=30)


@app.command("run")
def run_command(coin: CoinOption, json_out: JsonOption = False,
                log_level: Annotated[str, typer.Option(help="debug, info, warning or error")]
                = "warning") -> None:
    """Follow the open batches (broadcast, confirm, void, refund), then pay every miner at
    or above min_payout, once."""
    config = _config(coin)
    setup_logging(log_level)

    async def work(engine: AsyncEngine) -> Any:
        async with _wallet(config) as wallet:
            payer = PaymentProcessor.from_config(config, engine=engine, wallet=wallet)
            return await payer.run_once()
    report = _with_database(config, work)
    if json_out:
        typer.echo(json.dumps(dataclasses.asdict(report)))
    else:
        colour = {"paid": "green", "nothing_due": "green", "stopped": "red"}.get(
            report.status, "yellow")
        console.print(f"{config.coin.prefix}: [{colour}]{report.status}[/] {report.message}")
        if report.confirmed or report.refunded or report.voiding:
            console.print(f"open batches: {report.confirmed} confirmed, {report.refunded} "
                          f"failed and credited back, {report.voiding} being voided")
    if report.status == "stopped":
        raise typer.Exit(1)


TxidArgument = Annotated[str, typer.Argument(help="the wallet transaction id")]


def _checked_txid(txid: str) -> str:
    txid = txid.strip().lower()
    if len(txid) != 64 or any(c not in "0123456789abcdef" for c in txid):
        console.print(f"[red]error:[/] not a transaction id (64 hex digits): {txid!r}")
        raise typer.Exit(2)
    return txid


@app.command("ignore-tx")
def ignore_tx_command(coin: CoinOption, txid: TxidArgument,
                      note: Annotated[str, typer.Option(help="why it owes the miners nothing")]
                      = "acknowledged by the operator") -> None:
    """Acknowledge a wallet send that owes the miners nothing (a send by hand), so that
    payments resume."""
    config = _config(coin)
    txid = _checked_txid(txid)
    if not _with_database(config, lambda engine: wallet_watch.mark(
            engine, txid, wallet_watch.IGNORED, note[:200])):
        console.print(f"{config.coin.prefix}: {txid} is a payment batch's own transaction: "
                      "nothing to acknowledge")
        return
    console.print(f"{config.coin.prefix}: {txid} ignored; payments resume when no unknown "
                  "send is left")


@app.command("adopt-tx")
def adopt_tx_command(coin: CoinOption, txid: TxidArgument) -> None:
    """Book a wallet send that paid miners this database still owes (a database restored
    from an older backup) as a batch: each recipient with an account here is debited
    what it received."""
    config = _config(coin)
    txid = _checked_txid(txid)
    decimals = config.network.decimals

    async def work(engine: AsyncEngine) -> tuple[str, dict[str, int]]:
        async with _wallet(config) as wallet:
            return await adopt_send(engine, wallet, txid, decimals=decimals,
                                    fee_account=config.pool.fee_address or POOL_FEE)
    batch_id, received = _with_database(config, work)
    console.print(f"{config.coin.prefix}: {txid} booked as batch {batch_id}: "
                  f"{format_coins(sum(received.values()), decimals)} debited from "
                  f"{len(received)} account(s)")


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
    """Show whether payments run (and why not), what is owed, batches by state, unknown
    wallet sends and negative accounts."""
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
            states = (await connection.execute(
                select(payment_batches.c.status, func.count(),
                       func.coalesce(func.sum(payment_batches.c.total), 0))
                .group_by(payment_batches.c.status))).all()
            shown = select(payment_batches.c.id, payment_batches.c.created,
                           payment_batches.c.status, payment_batches.c.total,
                           payment_batches.c.txid, payment_batches.c.confirmations,
                           payment_batches.c.void_txid)
            open_batches = (await connection.execute(
                shown.where(payment_batches.c.status.in_(OPEN))
                .order_by(payment_batches.c.created))).all()
            batches = (await connection.execute(
                shown.order_by(payment_batches.c.created.desc()).limit(10))).all()
            negative = await bookkeeping.negative_balances(connection)
        unknown = await wallet_watch.unknown_sends(engine)
        paused = await is_paused(engine)
        reason = (PAUSED_BY_HAND if paused
                  else wallet_watch.pause_message(unknown) if unknown else None)

        def batch(b: Any) -> dict[str, Any]:
            return {"id": b.id, "created": str(b.created), "status": b.status,
                    "total": int(b.total), "txid": b.txid, "confirmations": b.confirmations,
                    "void_txid": b.void_txid}
        return {"coin": config.coin.prefix, "paused": paused or bool(unknown),
                "pause_reason": reason, "miners_owed": owed[0], "owed": int(owed[1]),
                "miners_due": due[0], "due": int(due[1]), "min_payout": threshold,
                "states": {str(s): {"batches": int(n), "total": int(t)} for s, n, t in states},
                "open_batches": [batch(b) for b in open_batches],
                "batches": [batch(b) for b in batches],
                "unknown_sends": [{"txid": u.txid, "amount": u.amount, "seen": str(u.seen)}
                                  for u in unknown],
                "negative_accounts": [{"address": a, "amount": v} for a, v in negative]}
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
    if status["pause_reason"]:
        out.print(f"[yellow]{status['pause_reason']}[/]", soft_wrap=True)
    if status["states"]:
        out.print("batches by state: " + ", ".join(
            f"{name} {v['batches']} ({format_coins(v['total'], decimals)})"
            for name, v in sorted(status["states"].items())), soft_wrap=True)
    for send in status["unknown_sends"]:
        out.print(f"[yellow]unknown wallet send[/] {send['txid']} "
                  f"({format_coins(send['amount'], decimals)}, seen {send['seen'][:19]})",
                  soft_wrap=True)
    for account in status["negative_accounts"]:
        out.print(f"[red]negative account[/] {account['address']!r}: "
                  f"{format_coins(account['amount'], decimals)}", soft_wrap=True)
    if status["batches"]:
        table = Table("batch", "created", "status", "total", "txid", "depth")
        for b in status["batches"]:
            table.add_row(b["id"], b["created"][:19], b["status"],
                          format_coins(b["total"], decimals), b["txid"] or "",
                          "" if b["confirmations"] is None else str(b["confirmations"]))
        out.print(table)
