"""`multipool miner`: the CPU test miner against any Stratum V1 pool.

Prints a status line every few seconds to stderr, and a summary when it stops (after
``--shares`` shares, on Ctrl-C or SIGTERM): a table, or JSON on stdout with ``--json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from multipool.chain.pow import ALGORITHMS
from multipool.cli.logs import setup_logging
from multipool.errors import ConfigError
from multipool.miner import MinerError, StratumMiner

# Seconds between two status lines.
STATUS_INTERVAL = 5.0
SCHEMES = ("stratum+tcp", "stratum")


def parse_stratum_url(url: str) -> tuple[str, int]:
    """Given a pool URL, return (host, port) or raise ValueError saying what is wrong.

    >>> parse_stratum_url("stratum+tcp://127.0.0.1:3333")
    ('127.0.0.1', 3333)
    >>> parse_stratum_url("stratum+tcp://[::1]:3333")
    ('::1', 3333)
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url!r} must start with stratum+tcp:// (TLS is not supported)")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    if port is None or port == 0:
        raise ValueError(f"{url!r} has no port (stratum+tcp://host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r} must be only stratum+tcp://host:port")
    return parts.hostname, port


def format_hashrate(rate: float) -> str:
    """Given hashes per second, return them with an SI prefix.

    >>> format_hashrate(1234567)
    '1.23 MH/s'
    """
    for prefix in ("", "k", "M", "G"):
        if rate < 1000:
            return f"{rate:.2f} {prefix}H/s"
        rate /= 1000
    return f"{rate:.2f} TH/s"


def summary_table(summary: dict[str, Any], seconds: float) -> Table:
    table = Table(title="miner summary", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("user", summary["username"])
    table.add_row("algorithm", summary["algorithm"])
    table.add_row("ran for", f"{seconds:,.1f} s")
    table.add_row("hashes", f"{summary['hashes']:,}")
    table.add_row("average hashrate", format_hashrate(summary["hashrate"]))
    table.add_row("shares accepted", str(summary["accepted"]))
    reasons = ", ".join(f"{n} x code {code}" for code, n in summary["reject_reasons"].items())
    table.add_row("shares rejected", f"{summary['rejected']}" + (f" ({reasons})"
                                                                 if reasons else ""))
    table.add_row("block candidates", str(summary["blocks_candidates"]))
    return table


async def report(miner: StratumMiner, console: Console) -> None:
    """Print a status line every STATUS_INTERVAL seconds, with the recent hashrate."""
    last_hashes, last_time = miner.hashes, time.monotonic()
    while True:
        await asyncio.sleep(STATUS_INTERVAL)
        now = time.monotonic()
        rate = (miner.hashes - last_hashes) / max(now - last_time, 1e-9)
        last_hashes, last_time = miner.hashes, now
        console.print(f"accepted [green]{miner.accepted}[/]  rejected [red]{miner.rejected}"
                      f"[/]  blocks {miner.blocks_candidates}  {format_hashrate(rate)}")


async def run_miner(miner: StratumMiner, console: Console | None) -> None:
    """Run the miner until it stops by itself or SIGINT/SIGTERM asks it to."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, miner.stop)
    reporter = asyncio.create_task(report(miner, console)) if console is not None else None
    try:
        await miner.run()
    finally:
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter


def miner(
    url: Annotated[str, typer.Option("--url", "-o",
                                     help="the pool, as stratum+tcp://host:port")],
    user: Annotated[str, typer.Option("--user", "-u",
                                      help="payout address, optionally .worker")],
    # A stratum password is an options field, not a secret.
    password: Annotated[str, typer.Option("--password", "-p",
                                          help="stratum password, e.g. x or d=0.01")]
    = "x",  # noqa: S107
    algorithm: Annotated[str, typer.Option("--algorithm", "-a",
                                           help="sha256d or scrypt")] = "scrypt",
    shares: Annotated[int | None, typer.Option(help="stop after submitting this many shares",
                                               min=1)] = None,
    hashrate: Annotated[float | None, typer.Option(help="cap the hashrate (hashes/s)")]
    = None,
    version_rolling: Annotated[bool, typer.Option(help="ask for BIP310 version rolling")]
    = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
    = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")]
    = "warning",
) -> None:
    """Mine on a Stratum V1 pool with the CPU (slowly): a test and demo miner."""
    try:
        host, port = parse_stratum_url(url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--url'") from None
    if algorithm not in ALGORITHMS:
        raise typer.BadParameter(f"must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}",
                                 param_hint="'--algorithm'")
    try:
        setup_logging(log_level)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--log-level'") from None
    try:
        the_miner = StratumMiner(host=host, port=port, username=user, password=password,
                                 algorithm=algorithm, version_rolling=version_rolling,
                                 max_shares=shares, hashrate_limit=hashrate)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    err = Console(stderr=True)
    if not json_out:
        err.print(f"mining {algorithm} on {url} as {user} (Ctrl-C stops)")
    began = time.monotonic()
    failure: str | None = None
    try:
        asyncio.run(run_miner(the_miner, None if json_out else err))
    except (OSError, TimeoutError, MinerError) as exc:
        failure = f"{url}: {exc or type(exc).__name__}"
    seconds = time.monotonic() - began
    summary = the_miner.summary()
    if json_out:
        summary["seconds"] = round(seconds, 3)
        summary["error"] = failure
        typer.echo(json.dumps(summary, indent=2))
    else:
        Console().print(summary_table(summary, seconds))
    if failure is not None:
        err.print(f"[red]error:[/] {failure}", highlight=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `miner` command to the main app."""
    app.command("miner")(miner)
