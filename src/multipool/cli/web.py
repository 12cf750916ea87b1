"""`multipool web serve`: the web process (every pool's page and the JSON API)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from pathlib import Path
from typing import Annotated

import typer

from multipool.cli.common import DEFAULT, RootOption, reported_errors
from multipool.cli.exits import exit_logged
from multipool.cli.logs import setup_logging
from multipool.cli.pool import refuse_root
from multipool.config import MAX_WEB_WORKERS
from multipool.errors import ConfigError
from multipool.web.app import create_app
from multipool.web.metrics import create_metrics_app
from multipool.web.server import (
    bind_sockets,
    check_host,
    make_server,
    parse_listen,
    serve_all,
)
from multipool.web.settings import LOOPBACK_PROXIES, WebSettings
from multipool.web.status import StatusReader
from multipool.web.workers import auto_workers, run_workers

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
    routing: Annotated[str, typer.Option(
        help="path (/ltc/) or subdomain (ltc.example.org)")] = "path",
    metrics_listen: Annotated[str, typer.Option(
        help="HOST:PORT of the Prometheus /metrics listener, never proxied; '' for none"
    )] = "127.0.0.1:9108",
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        help="an address or network whose X-Forwarded-For is believed (repeat)")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="an origin allowed to read /api/v1 from a browser, or * (repeat)")] = None,
    rate_limit: Annotated[float, typer.Option(
        help="API requests per second per client IP (bursts of ten times as many)")] = 10.0,
    offline_after: Annotated[int, typer.Option(
        help="minutes without a share after which a worker is offline")] = 10,
    workers: Annotated[int, typer.Option(
        help="processes serving pages (0: one per core, up to 4)")] = 0,
    allow_root: Annotated[bool, typer.Option(help="run even as root")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Serve the pools' pages and JSON API in the foreground until Ctrl-C or SIGTERM.

    It reads ROOT/web/<prefix>/ and the pools' databases read-only, and needs no secret
    beyond the read-only database role's: settings are options."""
    settings = WebSettings(
        public_host=public_host, routing=routing, metrics_listen=metrics_listen,
        trusted_proxies=tuple(trusted_proxy) if trusted_proxy else LOOPBACK_PROXIES,
        cors_origins=tuple(cors_origin or ()), rate_limit=rate_limit,
        offline_after=offline_after)
    with exit_logged("web process", logger):
        status = _serve(root, listen, settings, allow_root, log_level, workers)
    if status:
        raise typer.Exit(status)


def _serve(root: Path, listen: str, settings: WebSettings, allow_root: bool,
           log_level: str, workers: int) -> int:
    """Serve until a stop signal; return the exit status."""
    refuse_root(allow_root, user="the web user (multipool-web)")
    public_host = settings.public_host
    with reported_errors():
        host, port = parse_listen(listen)
        if not check_host(public_host):
            raise ConfigError(f"must be a host name or IP address, got {public_host!r}",
                              key="--public-host")
        if settings.routing not in ("path", "subdomain"):
            raise ConfigError(f"must be path or subdomain, got {settings.routing!r}",
                              key="--routing")
        if settings.metrics_listen:
            parse_listen(settings.metrics_listen, "--metrics-listen")
            if settings.metrics_listen == listen:
                raise ConfigError("must differ from --listen: /metrics is never served "
                                  "where the proxy sends the public", key="--metrics-listen")
        for proxy in settings.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(f"must be an IP address or network, got {proxy!r}",
                                  key="--trusted-proxy") from None
        if not settings.rate_limit > 0:
            raise ConfigError(f"must be greater than 0, got {settings.rate_limit}",
                              key="--rate-limit")
        if not 1 <= settings.offline_after <= 24 * 60:
            raise ConfigError(f"must be between 1 and 1440 minutes, got "
                              f"{settings.offline_after}", key="--offline-after")
        root = root.resolve()
        if not root.is_dir():
            raise ConfigError(f"no such directory: {root}", key="--root")
        if log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"must be debug, info, warning or error, got {log_level!r}",
                              key="--log-level")
        if not 0 <= workers <= MAX_WEB_WORKERS:
            raise ConfigError(f"must be between 0 (one per core) and {MAX_WEB_WORKERS}, got "
                              f"{workers}", key="--workers")
        setup_logging(log_level)
        sockets = bind_sockets(host, port)
        metrics_sockets: list[socket.socket] = []
        if settings.metrics_listen:
            metrics_host, metrics_port = parse_listen(settings.metrics_listen,
                                                      "--metrics-listen")
            try:
                metrics_sockets = bind_sockets(metrics_host, metrics_port)
            except OSError:
                for sock in sockets:
                    sock.close()
                raise
    # The one line that says it listens is multipool's own (multipool.web).
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)

    def worker(number: int) -> int:
        # Each worker its own app (readers, caches, event loop); the first also serves
        # /metrics (one listener: its figures come from the status files).
        servers = [(make_server(create_app(root=root, settings=settings),
                                banner=f" (pools from {root / 'web'}, "
                                       f"public host {settings.public_host})"), sockets)]
        if metrics_sockets and number == 0:
            servers.append((make_server(create_metrics_app(StatusReader(root)),
                                        banner=" (Prometheus /metrics)"), metrics_sockets))
        asyncio.run(serve_all(servers))
        return 0

    count = workers or auto_workers()
    status = worker(0) if count == 1 else run_workers(count, worker, logger)
    logger.info("stopped")
    return status
