"""The `multipool` command."""

from __future__ import annotations

import typer

from multipool import __version__
from multipool.cli import backup, coin, db, demo, miner_cmd, payments, pool, server, web

app = typer.Typer(help="Run many mining pools, one per coin, on one server.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.command("init")(server.init)
app.add_typer(coin.app, name="coin")
app.command("run")(server.run)
app.command("status")(server.status)
app.command("start")(server.start)
app.command("stop")(server.stop)
app.command("restart")(server.restart)
app.command("backup")(backup.backup)
app.add_typer(pool.app, name="pool")
app.add_typer(db.app, name="db")
app.add_typer(payments.app, name="payments")
app.add_typer(web.app, name="web")
app.command("demo")(demo.demo)
miner_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"multipool {__version__}")
        raise typer.Exit


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version,
                                      is_eager=True, help="print the version")) -> None:
    """multipool: one tidy server, one isolated pool per coin."""
