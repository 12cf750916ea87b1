"""`multipool web serve`: the web process (every pool's page and the JSON API)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from multipool.cli.common import DEFAULT, RootOption, reported_errors
from multipool.cli.exits import exit_logged
from multipool.cli.logs import setup_logging
from multipool.cli.pool import refuse_root
from multipool.errors import ConfigError
from multipool.web.app import create_app
from multipool.web.server import bind_sockets, check_host, make_server, parse_listen

app = typer.Typer(help="Run the web process: every pool's page and the JSON API.",
                  no_args_is_help=True)
logger = logging.getLogger("multipool.web")


@app.command("serve")
def serve(
    root: RootOption = DEFAULT,
    listen: Annotated[str, typer.Option(
        help="HOST:PORT to listen on (nginx or Apache in front)")] = "127.0.0.1:8080",
    public_host: Annotated[str, typer.Option(
        help="the host name miners connect to, shown in the stratum URLs")] = "localhost",
    allow_root: Annotated[bool, typer.Option(help="run even as root")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Serve the pools' page and JSON API in the foreground until Ctrl-C or SIGTERM.

    It reads only ROOT/web/<prefix>/status.json and needs no secret: settings are options."""
    with exit_logged("web process", logger):
        _serve(root, listen, public_host, allow_root, log_level)


def _serve(root: Path, listen: str, public_host: str, allow_root: bool,
           log_level: str) -> None:
    refuse_root(allow_root, user="the web user (multipool-web)")
    with reported_errors():
        host, port = parse_listen(listen)
        if not check_host(public_host):
            raise ConfigError(f"must be a host name or IP address, got {public_host!r}",
                              key="--public-host")
        root = root.resolve()
        if not root.is_dir():
            raise ConfigError(f"no such directory: {root}", key="--root")
        if log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"must be debug, info, warning or error, got {log_level!r}",
                              key="--log-level")
        setup_logging(log_level)
        web_app = create_app(root=root, public_host=public_host)
        sockets = bind_sockets(host, port)
    # The one line that says it listens is multipool's own (multipool.web).
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    server = make_server(web_app, banner=f" (pools from {root / 'web'}, "
                                         f"public host {public_host})")
    asyncio.run(server.serve(sockets=sockets))
    logger.info("stopped")
