"""The coin daemon's config file, its RPC credentials and its ports.

    password = new_password()                     # goes into coin.toml (0640), never here
    text = render_daemon_conf(network="regtest", rpc_port=19443, p2p_port=19444,
                              onion_port=19445, rpcauth_value=rpcauth("pool", password),
                              wallet="pool", zmq_port=None, prefix="ltc")

The daemon gets only the salted HMAC of the password (``rpcauth=``, as Bitcoin Core's
``share/rpcauth/rpcauth.py`` writes it), RPC is bound to 127.0.0.1 and only 127.0.0.1 may
call it. Bitcoin Core (0.17 and later, so Litecoin 0.21 and Peercoin too) reads
``rpcport``, ``rpcbind``, ``port``, ``bind``, ``addnode``, ``connect`` and ``wallet``
only from the section of the selected network when that network is not main: every
setting is therefore written under ``[main]``, ``[test]`` or ``[regtest]``, after the
network selector line. Daemons older than 0.17 (Dogecoin 1.14) know no sections: for them
``sections=False`` writes the same settings flat.

Every listener is pinned to a port multipool allocated, because a default port is shared
by every daemon of one kind on the host. Measured with litecoind 0.21: besides its P2P
port, a listening node binds a Tor onion-service target on 127.0.0.1 at a default port
(19444 in regtest, whatever ``port=`` says), also with ``listenonion=0``; the first node
to start takes it, and another coin's node whose P2P port is 19444 then finds a stranger
answering there (the two chains merge). An explicit ``bind=127.0.0.1:PORT=onion`` is the
only way to move it, so a listening daemon of Core 0.21 or later gets one (``onion_port``),
and ``listenonion=0`` unless the operator enables Tor. A node that does not listen
(``p2p_port=None``: ``listen=0``) binds nothing at all.

A ``wallet=NAME`` line is written when a wallet is named. Measured with litecoind 0.21: a
wallet that does not exist yet is skipped with a warning ("Skipping -wallet path that
doesn't exist") and the daemon starts; the pool engine creates it over RPC
(``createwallet``), and from then on the line loads it at every start. The same wallet
also recorded by ``createwallet ... load_on_startup`` is only warned about ("Ignoring
duplicate -wallet").
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import socket
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import overload

from multipool.catalog import NetworkPorts

NETWORK_SELECTOR = {"main": None, "test": "testnet=1", "regtest": "regtest=1"}
LOOPBACK = "127.0.0.1"
# Where a public daemon (main, test) listens for peers: every IPv4 and IPv6 address.
PUBLIC_HOSTS = ("0.0.0.0", "::")  # noqa: S104 - peers connect from anywhere

# Core splits rpcauth on ":" and "$"; user names are kept to a safe alphabet.
_USER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_RPCAUTH = re.compile(r"[A-Za-z0-9_.-]{1,64}:[0-9a-f]{2,}\$[0-9a-f]{64}")
_SALT = re.compile(r"(?:[0-9a-f]{2})+")
# A config line's value: no line breaks, no "#" (starts a comment in Core's parser).
_VALUE = re.compile(r"[^\r\n#]*")
_PEER = re.compile(r"[A-Za-z0-9.:\[\]-]+")
_HOST = re.compile(r"[0-9A-Fa-f.:]+")
_WALLET = re.compile(r"[A-Za-z0-9_.-]+")


def new_password() -> str:
    """A fresh random RPC password (256 bits, URL-safe base64, as rpcauth.py makes them)."""
    return secrets.token_urlsafe(32)


def rpcauth(user: str, password: str, salt_hex: str | None = None) -> str:
    """Given an RPC user, its password and optionally a salt (hex; default 16 random
    bytes), return the value of a ``rpcauth=`` line: ``user:salt$hmac``, where ``hmac``
    is HMAC-SHA256 keyed with the salt's hex text (its ASCII bytes, not the decoded
    bytes) over the password, in lowercase hex. This is what Bitcoin Core's
    share/rpcauth/rpcauth.py prints and what the daemon checks a Basic auth password
    against.

    >>> rpcauth("pool", "secret", "00" * 16)[:38]
    'pool:00000000000000000000000000000000$'
    """
    if not _USER.fullmatch(user):
        raise ValueError(f"RPC user must be 1-64 letters, digits, '_', '.' or '-', got {user!r}")
    if not password:
        raise ValueError("RPC password must not be empty")
    salt = secrets.token_hex(16) if salt_hex is None else salt_hex
    if not _SALT.fullmatch(salt):
        raise ValueError(f"salt must be lowercase hex, got {salt!r}")
    digest = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
    return f"{user}:{salt}${digest}"


def matching_salt(conf: Path, user: str, password: str) -> str | None:
    """Given an existing daemon config file, an RPC user and its password, return the
    salt of the file's ``rpcauth=`` line for that user when it still matches the password
    (so that rewriting the file with :func:`rpcauth` changes nothing), else None (also when
    the file does not exist)."""
    try:
        text = conf.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for raw in text.splitlines():
        key, _, value = raw.strip().partition("=")
        if key.strip() != "rpcauth":
            continue
        value = value.strip()
        name, _, rest = value.partition(":")
        salt, _, _digest = rest.partition("$")
        if name != user or not _SALT.fullmatch(salt):
            continue
        if hmac.compare_digest(rpcauth(user, password, salt), value):
            return salt
    return None


def _check_port(what: str, port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{what} must be a port number 1-65535, got {port!r}")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_daemon_conf(*, network: str, rpc_port: int, p2p_port: int | None,
                       rpcauth_value: str, wallet: str | None, zmq_port: int | None,
                       bind_hosts: tuple[str, ...] = (LOOPBACK,),
                       onion_port: int | None = None, tor: bool = False,
                       connect: tuple[str, ...] | None = None, discovery: bool = True,
                       extra: tuple[str, ...] = (), sections: bool = True,
                       prefix: str | None = None) -> str:
    """Return the text of the daemon's config file.

    ``p2p_port`` is where it listens for peers, on each of ``bind_hosts``; None: it does
    not listen (``listen=0``) and binds no port but RPC's. ``onion_port`` pins the
    onion-service target of a listening Core 0.21+ daemon to 127.0.0.1 (see the module
    notes); ``tor`` switches the onion service itself on (``listenonion``). ``connect``
    None lets the daemon find peers itself; a tuple of host:port makes it connect to those
    only (``connect=``), and an empty tuple to none (``connect=0``). ``discovery`` False
    turns off DNS seeds and the discovery of its own addresses. ``extra`` lines
    (``key=value``) are appended as they are, ``sections=False`` writes everything without
    a network section (for daemons before Core 0.17), and ``prefix`` names the coin in the
    header comment. No password ever appears: only ``rpcauth_value`` (see :func:`rpcauth`).
    """
    if network not in NETWORK_SELECTOR:
        raise ValueError(f"network must be one of {', '.join(NETWORK_SELECTOR)}, got {network!r}")
    _check_port("rpc_port", rpc_port)
    ports = {"rpc": rpc_port}
    for what, port in (("p2p_port", p2p_port), ("zmq_port", zmq_port),
                       ("onion_port", onion_port)):
        if port is not None:
            _check_port(what, port)
            ports[what.removesuffix("_port")] = port
    if len(set(ports.values())) != len(ports):
        raise ValueError(f"the daemon's ports must differ, got {ports}")
    if onion_port is not None and p2p_port is None:
        raise ValueError("onion_port is for a daemon that listens: give p2p_port too")
    if tor and p2p_port is None:
        raise ValueError("tor needs a daemon that listens: give p2p_port too")
    if p2p_port is not None and not bind_hosts:
        raise ValueError("a daemon that listens needs at least one bind host")
    if not _RPCAUTH.fullmatch(rpcauth_value):
        raise ValueError("rpcauth_value must be user:salt$hmac as rpcauth() returns it")
    if wallet is not None and not _WALLET.fullmatch(wallet):
        raise ValueError(f"wallet name must be letters, digits, '_', '.' or '-', got {wallet!r}")
    for host in bind_hosts:
        if not _HOST.fullmatch(host):
            raise ValueError(f"bind host must be an IP address, got {host!r}")
    for peer in connect or ():
        if not _PEER.fullmatch(peer):
            raise ValueError(f"peer must be host:port, got {peer!r}")
    for line in extra:
        key, eq, value = line.partition("=")
        if not (eq and re.fullmatch(r"[a-z][a-z0-9]*", key) and _VALUE.fullmatch(value)):
            raise ValueError(f"extra line must be key=value on one line, got {line!r}")

    where = f"coin/{prefix}/coin.toml" if prefix else "coin/<prefix>/coin.toml"
    lines = [
        "# Generated by multipool: do not edit. This file is rewritten from the coin's",
        f"# settings: edits belong in {where}.",
        "# RPC: rpcauth only (salted HMAC, no password here), bound to 127.0.0.1.",
        "# Every listener is bound to a port of this coin's own (see `multipool coin list`).",
        "",
    ]
    selector = NETWORK_SELECTOR[network]
    if selector:
        lines.append(selector)
    if sections:
        # Core reads rpcport/rpcbind/port/wallet/addnode of a non-main network only from
        # its section: everything goes there.
        lines.append(f"[{network}]")
    lines += [
        "server=1",
        f"rpcauth={rpcauth_value}",
        f"rpcbind={LOOPBACK}",
        f"rpcallowip={LOOPBACK}",
        f"rpcport={rpc_port}",
    ]
    if p2p_port is None:
        lines.append("listen=0")
    else:
        lines += [f"port={p2p_port}", "listen=1"]
        lines += [f"bind={_host_port(host, p2p_port)}" for host in bind_hosts]
        if onion_port is not None:
            lines.append(f"bind={_host_port(LOOPBACK, onion_port)}=onion")
    lines.append(f"listenonion={1 if tor else 0}")
    if connect is not None:
        lines += [f"connect={peer}" for peer in connect] or ["connect=0"]
    if not discovery:
        lines += ["dnsseed=0", "discover=0"]
    if wallet is not None:
        lines.append(f"wallet={wallet}")
    if zmq_port is not None:
        lines.append(f"zmqpubhashblock=tcp://{LOOPBACK}:{zmq_port}")
    lines += list(extra)
    return "\n".join(lines) + "\n"


def port_free(port: int) -> bool:
    """True when a TCP socket could be bound to ``port`` right now, on 127.0.0.1 and on
    every IPv4 address (0.0.0.0): a listener on any local address makes it taken, as
    daemons listen for peers on all addresses. No SO_REUSEADDR, so a port with
    connections still in TIME_WAIT also counts as taken (we only move on to the next)."""
    for host in (LOOPBACK, "0.0.0.0"):  # noqa: S104 - a bind test, closed at once
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


@overload
def allocate_ports(wanted: NetworkPorts, taken: Collection[int], *,
                   is_free: Callable[[int], bool] = ...) -> NetworkPorts: ...
@overload
def allocate_ports(wanted: Mapping[str, int], taken: Collection[int], *,
                   is_free: Callable[[int], bool] = ...) -> dict[str, int]: ...
@overload
def allocate_ports(wanted: Sequence[int], taken: Collection[int], *,
                   is_free: Callable[[int], bool] = ...) -> list[int]: ...


def allocate_ports(wanted: NetworkPorts | Mapping[str, int] | Sequence[int],
                   taken: Collection[int], *,
                   is_free: Callable[[int], bool] = port_free,
                   ) -> NetworkPorts | dict[str, int] | list[int]:
    """Given the default ports wanted (a :class:`NetworkPorts`, a name -> port mapping or
    a list) and the ports already given to other coins, return the same shape with each
    default kept if it is neither taken nor in use now (``is_free``), else the next port
    above it that is; never two the same. Raise ValueError when none is left below 65536.
    """
    if isinstance(wanted, NetworkPorts):
        chosen = _allocate(wanted.as_list(), taken, is_free)
        return NetworkPorts(*chosen)
    if isinstance(wanted, Mapping):
        return dict(zip(wanted, _allocate(list(wanted.values()), taken, is_free), strict=True))
    return _allocate(list(wanted), taken, is_free)


def _allocate(wanted: list[int], taken: Collection[int],
              is_free: Callable[[int], bool]) -> list[int]:
    blocked = set(taken)
    # Every default is reserved first, so that an earlier port bumped upwards never lands
    # on a later one's default.
    defaults = set(wanted)
    chosen: list[int] = []
    for index, port in enumerate(wanted):
        _check_port(f"wanted port #{index}", port)
        candidate = port
        while (candidate in blocked or (candidate != port and candidate in defaults)
               or not is_free(candidate)):
            candidate += 1
            if candidate > 65535:
                raise ValueError(f"no free port at or above {port}")
        blocked.add(candidate)
        chosen.append(candidate)
    return chosen
