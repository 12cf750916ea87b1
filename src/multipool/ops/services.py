"""The services of a server, described once and run two ways: as systemd units
(:mod:`multipool.ops.systemd`) or in the foreground by ``multipool run``
(:mod:`multipool.ops.supervisor`), with the same argv, users and readiness gates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RpcReady:
    """Ready once the daemon answers ``getblockchaininfo`` at this URL."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    cookie_file: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One long-running process of the server."""

    name: str  # unit name without ".service": multipool-ltc-daemon
    description: str
    argv: tuple[str, ...]
    working_dir: Path
    user: str | None = None  # None: the caller (local mode)
    group: str | None = None
    # The only paths the process may write; everything else is read-only to it.
    writable: tuple[Path, ...] = ()
    # Services that must be ready before this one starts.
    after: tuple[str, ...] = ()
    ready: RpcReady | None = None
    # Listens on the network beyond loopback (p2p, stratum): needs AF_INET/AF_INET6 only.
    network: bool = True
    # Seconds to wait after SIGTERM before SIGKILL (a daemon flushes its chainstate).
    stop_timeout: float = 90.0
    # Environment for the process, on top of a clean one.
    environment: tuple[tuple[str, str], ...] = ()
