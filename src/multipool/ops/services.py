"""The services of a server, described once and run two ways: as systemd units
(:mod:`multipool.ops.systemd`) or in the foreground by ``multipool run``
(:mod:`multipool.ops.supervisor`), with the same argv, users and readiness gates."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
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
    # CPU priority against the other services: a nice value (0-19; higher yields more)
    # and, under systemd, a cgroup CPU weight (1-10000, None: systemd's default of 100).
    # The web process yields to the pool engines so that browsing never slows mining.
    nice: int = 0
    cpu_weight: int | None = None

    def __post_init__(self) -> None:
        # Only lowering: raising a priority would need a capability the units drop.
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice must be 0-19, got {self.nice}")
        if self.cpu_weight is not None and not 1 <= self.cpu_weight <= 10000:
            raise ValueError(f"cpu_weight must be 1-10000, got {self.cpu_weight}")


# The environment variable that carries a service's configuration fingerprint into its
# process, where /proc/<pid>/environ shows what a running process was started with.
CONFIG_ENV = "MULTIPOOL_CONFIG"


def fingerprinted(spec: ServiceSpec, *inputs: bytes) -> ServiceSpec:
    """Given a service and what it reads when it starts (its config, its binary's digest,
    ...), return the service with ``MULTIPOOL_CONFIG=<fingerprint>`` in its environment:
    a hash of its command, user, directories, environment and those inputs. A process
    whose fingerprint differs from its service's runs an older configuration.

    The hash covers secrets (an RPC password is part of coin.toml), and a unit file
    showing it is world-readable: a SHA-256 over 256-bit random passwords gives nothing
    away that could be guessed."""
    digest = hashlib.sha256()
    basics = [spec.name, *spec.argv, str(spec.working_dir), spec.user or "", spec.group or "",
              *map(str, spec.writable),
              *(f"{key}={value}" for key, value in spec.environment if key != CONFIG_ENV)]
    if spec.nice or spec.cpu_weight is not None:  # absent: fingerprints stay as they were
        basics += [f"nice={spec.nice}", f"cpu_weight={spec.cpu_weight}"]
    for part in [*(item.encode() for item in basics), *inputs]:
        digest.update(len(part).to_bytes(8, "big") + part)  # length-prefixed: unambiguous
    environment = tuple((k, v) for k, v in spec.environment if k != CONFIG_ENV)
    return replace(spec, environment=(*environment, (CONFIG_ENV, digest.hexdigest()[:32])))


def config_fingerprint(spec: ServiceSpec) -> str | None:
    """The fingerprint :func:`fingerprinted` gave the service, or None."""
    return dict(spec.environment).get(CONFIG_ENV)
