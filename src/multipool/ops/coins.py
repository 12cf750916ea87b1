"""`multipool coin add|remove`: one coin as one isolated unit of the server.

``coin add`` turns a coin definition (the shipped catalogue or the operator's TOML) into
coin/<prefix>/coin.toml, the coin's users and directories, its daemon binary, the daemon's
config, and its services. Once coin.toml exists it is the source of truth: adding the coin
again re-derives everything else from it (an operator's edits stay), so the command is
idempotent and resumes after a failure half-way.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from multipool.catalog import CoinDefinition
from multipool.config import CoinConfig, load_coin_config, parse_coin_config
from multipool.errors import ConfigError
from multipool.ops import changes, daemon_conf, databases
from multipool.ops.changes import Change
from multipool.ops.daemon_install import install_daemon, sha256_of
from multipool.ops.layout import Layout
from multipool.ops.reach import check_reachable
from multipool.ops.services import RpcReady, ServiceSpec, fingerprinted
from multipool.tomlwrite import toml_document

RPC_USER = "pool"
POOL_WALLET = "pool"
PEER_DIR = "peer"
# The web's read-only database password (PostgreSQL/MariaDB servers), at the root.
WEB_SECRET = "web-database.secret"  # noqa: S105 - a file name, not a password


@dataclass(frozen=True)
class CoinRequest:
    """What the operator asked `coin add` for. Without a definition (``coin add PREFIX``)
    the coin must exist: its coin.toml is applied again. ``network`` None: main for a new
    coin; for an existing one it must match."""

    definition: CoinDefinition | None
    prefix: str
    network: str | None = None
    address: str | None = None
    stratum_host: str | None = None  # None: every address (0.0.0.0)
    stratum_port: int | None = None
    # multipool.toml [database] url: "sqlite", or a PostgreSQL/MariaDB admin URL.
    database_admin: str = "sqlite"


def ports_in_use(layout: Layout, except_prefix: str) -> set[int]:
    """Every port the other coins of this server were given."""
    taken: set[int] = set()
    for prefix in layout.prefixes():
        if prefix == except_prefix:
            continue
        config = load_coin_config(layout.coin_file(prefix))
        taken |= coin_ports(config)
    return taken


def coin_ports(config: CoinConfig) -> set[int]:
    """Every port the coin's processes listen on (and its obsolete ones, kept reserved)."""
    return set(named_ports(config).values())


def named_ports(config: CoinConfig) -> dict[str, int]:
    """The coin's ports by the coin.toml key that sets them."""
    d = config.daemon
    found = {f"stratum.ports[{i}]": p.port for i, p in enumerate(config.stratum.ports)}
    candidates = {"daemon.rpc_url": urlsplit(d.rpc_url).port, "daemon.p2p_port": d.p2p_port,
                  "daemon.onion_port": d.onion_port, "daemon.peer_rpc_port": d.peer_rpc_port,
                  "daemon.peer_p2p_port": d.peer_p2p_port,
                  "daemon.zmq_hashblock": (urlsplit(d.zmq_hashblock).port
                                           if d.zmq_hashblock else None)}
    found |= {key: port for key, port in candidates.items() if port is not None}
    return found


def check_ports(layout: Layout, config: CoinConfig) -> None:
    """Refuse a coin whose ports repeat, or that another coin of the server uses: two
    listeners on one port is how two daemons end up sharing a chain."""
    ports = named_ports(config)
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port in seen:
            raise ConfigError(f"port {port} is also {seen[port]}: every listener needs a "
                              "port of its own", file=config.path, key=key)
        seen[port] = key
    for prefix in layout.prefixes():
        if prefix == config.coin.prefix:
            continue
        other = load_coin_config(layout.coin_file(prefix))
        for key, port in named_ports(other).items():
            if port in seen:
                raise ConfigError(f"port {port} is {key} of coin {prefix!r} "
                                  f"({other.path}): choose another", file=config.path,
                                  key=seen[port])
    d = config.daemon
    if d.tor and d.conf_sections and d.onion_port is None:
        raise ConfigError("needs daemon.onion_port, the local port Tor forwards to",
                          file=config.path, key="daemon.tor")


def new_coin_data(layout: Layout, request: CoinRequest) -> dict[str, Any]:
    """The contents of a new coin.toml: ports allocated, a random RPC password."""
    definition, network = request.definition, request.network or "main"
    assert definition is not None
    if network not in definition.ports:
        raise ConfigError(f"no ports for network {network!r} in the definition (it has "
                          f"{', '.join(sorted(definition.ports))})", file=definition.file,
                          key="ports")
    defaults = definition.ports[network]
    taken = ports_in_use(layout, request.prefix)
    if request.stratum_port is not None:
        check_stratum_port(layout, request.stratum_port)
        if request.stratum_port in taken or not daemon_conf.port_free(request.stratum_port):
            raise ConfigError(f"port {request.stratum_port} is in use", key="--stratum-port")
        taken.add(request.stratum_port)
    wanted = [defaults.rpc, defaults.p2p]
    if request.stratum_port is None:
        wanted.append(defaults.stratum)
    if definition.zmq:
        wanted.append(defaults.rpc + 100)
    # Core 0.21 and later bind an onion-service target; the daemons that read config
    # sections (0.17+) get a port of their own for it (see daemon_conf).
    if definition.conf_sections:
        wanted.append(defaults.p2p + 1)
    if network == "regtest":
        wanted.append(defaults.rpc + 1)
    given = iter(daemon_conf.allocate_ports(wanted, taken))
    rpc_port, p2p_port = next(given), next(given)
    stratum_port = request.stratum_port if request.stratum_port is not None else next(given)
    zmq_port = next(given) if definition.zmq else None
    onion_port = next(given) if definition.conf_sections else None
    peer_rpc = next(given) if network == "regtest" else None
    difficulty = (definition.regtest_difficulty if network == "regtest"
                  and definition.regtest_difficulty is not None else definition.difficulty)
    pool_dir = layout.pool_dir(request.prefix)
    return {
        "coin": {"name": definition.name, "prefix": request.prefix, "symbol": definition.symbol,
                 "algorithm": definition.algorithm, "network": network},
        "daemon": {
            "source": definition.source, "package": definition.package,
            "git": definition.git, "ref": definition.ref,
            "build": list(definition.build) if definition.build else None,
            "binary": definition.binary, "conf": definition.conf,
            "conf_sections": None if definition.conf_sections else False,
            "rpc_url": f"http://127.0.0.1:{rpc_port}", "rpc_user": RPC_USER,
            "rpc_password": daemon_conf.new_password(), "wallet": POOL_WALLET,
            "zmq_hashblock": f"tcp://127.0.0.1:{zmq_port}" if zmq_port else None,
            "p2p_port": p2p_port, "onion_port": onion_port, "peer_rpc_port": peer_rpc,
            "template_rules": (list(definition.template_rules)
                               if definition.template_rules else None),
        },
        "stratum": {"host": request.stratum_host or "0.0.0.0",  # noqa: S104 - miners anywhere
                    "ports": [{"port": stratum_port, "difficulty": difficulty,
                               "vardiff": True}]},
        "pool": {"address": request.address, "scheme": definition.scheme,
                 "fee_percent": definition.fee_percent, "min_payout": definition.min_payout,
                 "payment_interval": definition.payment_interval,
                 "state_dir": str(pool_dir),
                 "public_dir": str(layout.public_dir(request.prefix)),
                 "database": (f"sqlite:///{pool_dir / 'pool.db'}"
                              if request.database_admin == "sqlite" else
                              databases.coin_database_url(request.database_admin,
                                                          request.prefix,
                                                          databases.generate_password()))},
    }


COIN_HEADER = ("# The one place to edit this coin. After an edit, run `multipool coin add "
               "PREFIX` again:\n# it regenerates the daemon config and the services from "
               "this file, and restarts\n# the services whose configuration changed.\n")


def unprivileged_port_start() -> int:
    """The lowest port a process without CAP_NET_BIND_SERVICE may listen on (1024 unless
    the host lowered net.ipv4.ip_unprivileged_port_start)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def check_stratum_port(layout: Layout, port: int) -> None:
    """Refuse a stratum port the pool engine could not listen on: outside 1-65535, or
    privileged while the engine runs without root (every system install; a local one
    unless run by root)."""
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConfigError(f"must be a port number from 1 to 65535, got {port}",
                          key="--stratum-port")
    lowest = unprivileged_port_start()
    if port < lowest and (layout.system or os.geteuid() != 0):
        who = "its pool user" if layout.system else "you, not root"
        raise ConfigError(f"port {port} is below {lowest}: the pool engine runs as {who}, "
                          f"without the right to listen there; choose {lowest} or above "
                          "(or let a firewall rule forward the low port)",
                          key="--stratum-port")


def _refuse_option(option: str, path: Path, prefix: str, now: str, how: str) -> ConfigError:
    return ConfigError(f"{prefix} exists, with {now} (the options of `coin add` only shape a "
                       f"new coin): to change it, {how} in this file, then run "
                       f"`multipool coin add {prefix}`", file=str(path), key=option)


def check_options_for_existing(request: CoinRequest, config: CoinConfig, path: Path) -> None:
    """An option given with `coin add` for a coin added before must agree with its
    coin.toml: it is refused, saying what to edit, rather than ignored."""
    prefix = request.prefix
    if request.network is not None and request.network != config.coin.network:
        raise ConfigError(f"{prefix} was added for {config.coin.network}, not "
                          f"{request.network}: edit this file or remove the coin first",
                          file=str(path), key="coin.network")
    if request.address is not None and request.address != config.pool.address:
        now = (f"address {config.pool.address}" if config.pool.address
               else "no address, so that the engine takes one from the pool wallet")
        raise _refuse_option("--address", path, prefix, now,
                             f'set address = "{request.address}" under [pool]')
    ports = [p.port for p in config.stratum.ports]
    if request.stratum_port is not None and request.stratum_port not in ports:
        raise _refuse_option("--stratum-port", path, prefix,
                             f"stratum port{'s' if len(ports) > 1 else ''} "
                             f"{', '.join(map(str, ports))}",
                             f"set the port in [stratum] ports (port = "
                             f"{request.stratum_port})")
    if request.stratum_host is not None and request.stratum_host != config.stratum.host:
        raise _refuse_option("stratum host", path, prefix,
                             f"stratum host {config.stratum.host}",
                             f'set host = "{request.stratum_host}" under [stratum]')


def coin_config(layout: Layout, request: CoinRequest) -> tuple[CoinConfig, str | None]:
    """The coin's config: from its coin.toml if it was added before, else a new one with
    the text to write. A prefix taken by another coin is refused, and so is an option
    that disagrees with an existing coin.toml."""
    path = layout.coin_file(request.prefix)
    if request.stratum_port is not None:
        check_stratum_port(layout, request.stratum_port)
    if path.exists():
        config = load_coin_config(path)
        if request.definition is not None and config.coin.name != request.definition.name:
            raise ConfigError(f"prefix {request.prefix!r} is taken by {config.coin.name}: "
                              "choose another with --prefix", file=str(path), key="coin.prefix")
        check_options_for_existing(request, config, path)
        return config, None
    if request.definition is None:
        raise ConfigError(f"no coin {request.prefix!r} on this server to apply again, and "
                          "no catalogue coin of that name", key="COIN")
    text = toml_document(new_coin_data(layout, request), COIN_HEADER)
    return parse_coin_config(tomllib.loads(text), str(path)), text


def daemon_binary(layout: Layout, config: CoinConfig) -> Path:
    binary = config.daemon.binary
    if binary is None:
        raise ConfigError("is required for a managed daemon", file=config.path,
                          key="daemon.binary")
    return layout.bin_dir(config.coin.prefix) / Path(binary).name


def conf_name(config: CoinConfig) -> str:
    return config.daemon.conf or f"{config.coin.name}.conf"


def daemon_conf_text(config: CoinConfig, *, peer: bool, existing: Path) -> str:
    """The daemon's config (or its regtest companion's): rpcauth with the salt of the
    file already there when it still matches the password, so a re-run changes nothing.

    Regtest: the daemon listens on 127.0.0.1 only and connects to no one; its companion
    listens nowhere and connects to the daemon only, so each has exactly one peer, the
    other. Main and test: the daemon listens on every address and finds its peers."""
    d = config.daemon
    assert d.rpc_user is not None and d.rpc_password is not None
    return _render_conf(config, peer=peer,
                        salt=daemon_conf.matching_salt(existing, d.rpc_user, d.rpc_password))


# The daemon configs' fingerprints are taken with this salt, the same every time, so that
# they change with the settings and the password, not with the random salt of the file.
_FINGERPRINT_SALT = "00" * 16


def _render_conf(config: CoinConfig, *, peer: bool, salt: str | None) -> str:
    d = config.daemon
    assert d.rpc_user is not None and d.rpc_password is not None
    auth = daemon_conf.rpcauth(d.rpc_user, d.rpc_password, salt)
    main_rpc = urlsplit(d.rpc_url).port
    assert main_rpc is not None and d.p2p_port is not None
    zmq = urlsplit(d.zmq_hashblock).port if d.zmq_hashblock else None
    network = config.coin.network
    regtest = network == "regtest"
    if peer:
        assert d.peer_rpc_port is not None
        return daemon_conf.render_daemon_conf(
            network=network, rpc_port=d.peer_rpc_port, p2p_port=None, rpcauth_value=auth,
            wallet=None, zmq_port=None, connect=(f"{daemon_conf.LOOPBACK}:{d.p2p_port}",),
            discovery=False, sections=d.conf_sections, prefix=config.coin.prefix)
    return daemon_conf.render_daemon_conf(
        network=network, rpc_port=main_rpc, p2p_port=d.p2p_port,
        bind_hosts=(daemon_conf.LOOPBACK,) if regtest else daemon_conf.PUBLIC_HOSTS,
        onion_port=d.onion_port, tor=d.tor, connect=() if regtest else None,
        discovery=not regtest, rpcauth_value=auth, wallet=d.wallet, zmq_port=zmq,
        sections=d.conf_sections, prefix=config.coin.prefix)


def _file_digest(path: Path) -> bytes:
    """The SHA-256 of a file's content, b"missing" when there is none; remembered by
    size and modification time, as a daemon binary is tens of megabytes."""
    try:
        st = path.stat()
    except OSError:
        return b"missing"
    return _digest_of(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest_of(path: str, _size: int, _mtime_ns: int) -> bytes:
    return sha256_of(Path(path)).encode()


def daemon_inputs(config: CoinConfig, *, peer: bool) -> tuple[bytes, ...]:
    """What a daemon (or its companion) runs on, for its fingerprint: its config, where
    its binary comes from, and for a package or copied binary the binary's content (a
    package upgrade changes it under the same path)."""
    d = config.daemon
    source = json.dumps([d.source, d.package, d.git, d.ref, list(d.build), d.binary])
    binary = (_file_digest(Path(d.binary)) if d.source in ("package", "binary") and d.binary
              else b"")
    return (_render_conf(config, peer=peer, salt=_FINGERPRINT_SALT).encode(),
            source.encode(), binary)


def pool_inputs(config: CoinConfig) -> tuple[bytes, ...]:
    """What the pool engine runs on, for its fingerprint: every setting of coin.toml as
    parsed (a comment edited changes nothing)."""
    return (json.dumps(dataclasses.asdict(config), sort_keys=True, default=str).encode(),)


def coin_services(layout: Layout, config: CoinConfig) -> list[ServiceSpec]:
    """The coin's long-running processes: its daemon (and on regtest the companion node
    that is its peer), and its pool engine once the daemon answers; each carries the
    fingerprint of what it runs on (see :func:`~multipool.ops.services.fingerprinted`)."""
    prefix, d = config.coin.prefix, config.daemon
    binary = daemon_binary(layout, config)
    wallet_dir = layout.wallet_dir(prefix)
    daemon_user = layout.daemon_user(prefix)
    conf = conf_name(config)
    specs = [fingerprinted(ServiceSpec(
        name=f"multipool-{prefix}-daemon",
        description=f"{config.coin.name} daemon for the {prefix} pool",
        argv=(str(binary), f"-datadir={wallet_dir}", f"-conf={wallet_dir / conf}",
              "-printtoconsole"),
        working_dir=wallet_dir, user=daemon_user, group=daemon_user, writable=(wallet_dir,),
        ready=RpcReady(d.rpc_url, d.rpc_user, d.rpc_password, d.rpc_cookie)),
        *daemon_inputs(config, peer=False))]
    if d.peer_rpc_port is not None:
        peer_dir = wallet_dir / PEER_DIR
        specs.append(fingerprinted(ServiceSpec(
            name=f"multipool-{prefix}-peer",
            description=f"{config.coin.name} regtest companion node of the {prefix} pool",
            argv=(str(binary), f"-datadir={peer_dir}", f"-conf={peer_dir / conf}",
                  "-printtoconsole"),
            working_dir=peer_dir, user=daemon_user, group=daemon_user, writable=(peer_dir,)),
            *daemon_inputs(config, peer=True)))
    pool_user = layout.pool_user(prefix)
    argv = [sys.executable, "-m", "multipool.cli", "pool", "serve",
            "--coin", str(layout.coin_file(prefix))]
    if not layout.system and os.geteuid() == 0:
        argv.append("--allow-root")  # a local install run by root (a container, CI)
    specs.append(fingerprinted(ServiceSpec(
        name=f"multipool-{prefix}-pool",
        description=f"multipool pool engine for {config.coin.name} ({prefix})",
        argv=tuple(argv), working_dir=layout.pool_dir(prefix), user=pool_user,
        group=pool_user, writable=tuple(Path(p) for p in (
            layout.pool_dir(prefix), config.pool.public_dir) if p is not None),
        after=(f"multipool-{prefix}-daemon",), stop_timeout=30.0), *pool_inputs(config)))
    return specs


def database_changes(layout: Layout, config: CoinConfig, admin_url: str) -> list[Change]:
    """On PostgreSQL or MariaDB: the coin's database and role (the password is the one
    in coin.toml), and the web's read-only role (its password kept beside multipool.toml,
    readable by the web user only)."""
    url = config.pool.database
    if admin_url == "sqlite" or url is None or url.startswith("sqlite"):
        return []
    password = urlsplit(url).password
    if password is None:
        raise ConfigError("needs the coin role's password in the URL", file=config.path,
                          key="pool.database")
    secret = layout.root / WEB_SECRET
    web_password = (secret.read_text().strip() if secret.exists()
                    else databases.generate_password())
    plan = changes.file(secret, web_password + "\n", owner=layout.admin,
                        group=layout.web_user, mode=0o640)
    _url, found = databases.coin_database_plan(admin_url, config.coin.prefix,
                                               password=unquote(password),
                                               web_password=web_password)
    return plan + found


def coin_add_changes(layout: Layout,
                     request: CoinRequest) -> tuple[CoinConfig, list[Change]]:
    """Given an initialised server and a request, return the coin's config and what
    `coin add` must change. Everything is validated before the first change is made."""
    prefix = request.prefix
    config, new_text = coin_config(layout, request)
    check_ports(layout, config)
    plan: list[Change] = []
    daemon_user, pool_user = layout.daemon_user(prefix), layout.pool_user(prefix)
    if layout.system:
        assert daemon_user is not None and pool_user is not None
        # The engine runs this interpreter as the pool user: refused now if it cannot.
        check_reachable(pool_user, "the pool engine")
        plan += changes.system_user(daemon_user, home=layout.wallet_dir(prefix))
        plan += changes.system_user(pool_user, home=layout.pool_dir(prefix))
    for entry in layout.coin_entries(prefix):
        plan += changes.directory(entry.path, owner=entry.owner, group=entry.group,
                                  mode=entry.mode)
    if layout.system:
        # A SQLite database from before the web read it: into the web user's group
        # (new ones get it from the directory's setgid bit; the engine keeps them 0640).
        for name in ("pool.db", "pool.db-wal", "pool.db-shm"):
            database_file = layout.pool_dir(prefix) / name
            if database_file.is_file() and not database_file.is_symlink():
                plan += changes.attribute_changes("files.file", database_file, pool_user,
                                                  layout.web_user, 0o640)
    coin_file = layout.coin_file(prefix)
    if new_text is not None:
        plan += changes.file(coin_file, new_text, owner=layout.admin, group=pool_user,
                             mode=0o640)
    else:  # the operator's file: its content is theirs, its owner and mode are ours
        plan += changes.attribute_changes("files.file", coin_file, layout.admin, pool_user,
                                          0o640)
    d = config.daemon
    plan += install_daemon(layout, prefix, source=d.source, binary=d.binary or "",
                           package=d.package, git=d.git, ref=d.ref, build=d.build)
    plan += database_changes(layout, config, request.database_admin)
    wallet_dir = layout.wallet_dir(prefix)
    conf = conf_name(config)
    conf_path = wallet_dir / conf
    plan += changes.file(conf_path, daemon_conf_text(config, peer=False, existing=conf_path),
                         owner=layout.admin, group=daemon_user, mode=0o640)
    plan += changes.symlink(layout.coin_dir(prefix) / conf, conf_path)
    if config.daemon.peer_rpc_port is not None:
        peer_dir = wallet_dir / PEER_DIR
        peer_conf = peer_dir / conf
        plan += changes.directory(peer_dir, owner=daemon_user, group=daemon_user, mode=0o700)
        plan += changes.file(peer_conf, daemon_conf_text(config, peer=True, existing=peer_conf),
                             owner=layout.admin, group=daemon_user, mode=0o640)
    return config, plan


def _remove_tree(path: Path) -> Change:
    return Change("files.remove", str(path), "delete", partial(shutil.rmtree, path))


def coin_remove_changes(layout: Layout, prefix: str, *, delete_wallet: bool,
                        then: Sequence[Change] = ()) -> list[Change]:
    """What `coin remove` changes: the coin's config, binary and sources go; its wallet
    and pool database (the coins, the keys and the record of what miners are owed) stay
    unless ``delete_wallet``. ``then`` comes after the config is gone and before the
    wallet is deleted (a running `multipool run` told to stop the coin's services)."""
    coin_file = layout.coin_file(prefix)
    if not coin_file.exists():
        known = ", ".join(layout.prefixes()) or "none"
        raise ConfigError(f"no coin with prefix {prefix!r} (coins: {known})", key="PREFIX")
    paths = [layout.coin_dir(prefix), layout.bin_dir(prefix), layout.src_dir(prefix)]
    plan = [_remove_tree(path) for path in paths if path.exists()]
    plan += then
    if delete_wallet:
        plan += [_remove_tree(path) for path in (layout.pool_dir(prefix),
                                                 layout.wallet_dir(prefix)) if path.exists()]
    return plan
