"""Running the web app under uvicorn: the listen address, the sockets, clean stops."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import signal
import socket
from collections.abc import Generator, Sequence

import uvicorn
from starlette.types import ASGIApp

from multipool.errors import ConfigError
from multipool.heap import freeze_start_up

logger = logging.getLogger("multipool.web")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Seconds a stop waits for requests in flight before cutting them off.
GRACEFUL_STOP = 5
# Open connections beyond this get 503 at once: the page is small and nginx sits in
# front, so more means something is wrong, and memory stays bounded.
MAX_CONNECTIONS = 500
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                        r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


def parse_listen(listen: str, key: str = "--listen") -> tuple[str, int]:
    """Given HOST:PORT (an IPv6 host in brackets), return the host and the port.

    >>> parse_listen("127.0.0.1:8080"), parse_listen("[::1]:80")
    (('127.0.0.1', 8080), ('::1', 80))
    """
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (host and port.isascii() and port.isdigit() and 0 < int(port) < 65536
            and check_host(host)):
        raise ConfigError(f"must be HOST:PORT, got {listen!r}", key=key)
    return host, int(port)


def check_host(name: str) -> bool:
    """Whether name is a DNS host name or an IP address (nothing that needs quoting).

    >>> check_host("pool.example.org"), check_host("::1"), check_host("a b"), check_host("")
    (True, True, False, False)
    """
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return bool(_HOST_NAME.fullmatch(name))
    return True


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Given a host (name or address) and a port, return listening-ready TCP sockets
    bound to every address the host resolves to, as asyncio's create_server would;
    OSError (address in use, permission denied) when one cannot be bound."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if isinstance(exc, socket.gaierror):
            raise OSError(f"cannot resolve {host}: {exc.strerror}") from None
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sockets


def describe(sockets: list[socket.socket]) -> str:
    """The URLs the sockets serve, for the log."""
    urls = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        urls.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    return ", ".join(urls)


class WebServer(uvicorn.Server):
    """uvicorn's server, with two changes for a supervised service:

    - it leaves the stop signals to :func:`serve_all`, which stops every server of the
      process at once and lets it exit 0: uvicorn itself raises the signal again after
      its graceful stop, which would end the process by the signal after all (status
      143), and systemd would call that a failure;
    - one line is logged when it listens (uvicorn's own start-up chatter is left out);
    - what start-up built is then left out of garbage collection (multipool.heap).
    """

    def __init__(self, config: uvicorn.Config, *, banner: str = ""):
        super().__init__(config)
        self.banner = banner

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # serve_all handles them, once for all the servers

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            frozen = freeze_start_up()
            logger.info("listening on %s%s", describe(sockets or []), self.banner)
            logger.debug("%d objects of start-up left out of garbage collection", frozen)


async def serve_all(servers: Sequence[tuple[WebServer, list[socket.socket]]]) -> None:
    """Run several servers (the pages, the metrics) on this loop until a stop signal
    stops them all; if one of them stops by itself, the others are stopped too. The
    signals are handled here once, for all of them (a second Ctrl-C forces them down,
    as in uvicorn)."""
    loop = asyncio.get_running_loop()

    stopping = False

    def stop(sig: int = signal.SIGTERM) -> None:
        nonlocal stopping
        force, stopping = stopping and sig == signal.SIGINT, True
        for server, _ in servers:
            if force:
                server.force_exit = True
            else:
                server.should_exit = True

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        tasks = [asyncio.create_task(server.serve(sockets=sockets))
                 for server, sockets in servers]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()
        # Every server has stopped before an error of one of them is raised.
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def make_server(app: ASGIApp, *, banner: str = "") -> WebServer:
    """Given the ASGI app, return a server to run with ``serve(sockets)``."""
    config = uvicorn.Config(
        app,
        log_config=None,          # logging is multipool's (cli.logs.setup_logging)
        access_log=False,         # nginx in front keeps the access log
        server_header=False,
        lifespan="auto",          # the app closes its database readers on stop
        # httptools (C) parses requests in a fraction of h11's time: 1.7x the requests/s
        # on a cached page (docs/performance.md). Named, so that a missing install fails
        # at start instead of falling back to h11 unnoticed.
        http="httptools",
        proxy_headers=False,      # the app believes X-Forwarded-For from trusted_proxies only
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=GRACEFUL_STOP,
    )
    return WebServer(config, banner=banner)
