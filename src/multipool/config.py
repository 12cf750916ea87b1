"""Typed coin configuration, loaded from a coin TOML file and validated once.

The keys follow the config contract of the design brief (``[coin]``, ``[daemon]``,
``[stratum]``, ``[pool]``). Unknown keys are refused, every error names the file, the key
and the reason, and nothing is returned until the whole file is valid.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from multipool.chain.address import address_to_script
from multipool.chain.networks import NetworkParams, get_network
from multipool.chain.pow import ALGORITHMS
from multipool.errors import AddressError, ConfigError

PREFIX_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789")


@dataclass(frozen=True, slots=True)
class PortConfig:
    """One stratum listening port with its difficulty policy."""

    port: int
    difficulty: float
    vardiff: bool = True
    min_difficulty: float | None = None
    max_difficulty: float | None = None
    target_share_time: float = 15.0
    retarget_interval: float = 90.0
    variance_percent: float = 30.0
    tls: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def floor(self) -> float:
        return self.min_difficulty if self.min_difficulty is not None else self.difficulty / 1024

    @property
    def ceiling(self) -> float:
        return self.max_difficulty if self.max_difficulty is not None else self.difficulty * 2**20


@dataclass(frozen=True, slots=True)
class CoinSection:
    name: str
    prefix: str
    symbol: str
    algorithm: str
    network: str


@dataclass(frozen=True, slots=True)
class DaemonSection:
    rpc_url: str
    rpc_user: str | None = None
    rpc_password: str | None = field(default=None, repr=False)
    rpc_cookie: str | None = None
    wallet: str | None = None
    zmq_hashblock: str | None = None
    # Build fields belong to the server manager; kept so one coin.toml serves both.
    source: str = "package"
    package: str | None = None
    git: str | None = None
    ref: str | None = None
    build: tuple[str, ...] = ()
    binary: str | None = None
    # Written by `multipool coin add`: the daemon's config file name and p2p port, its
    # onion-service target (Core 0.21+ binds one on a shared default port otherwise), and
    # for regtest the RPC port of the companion node that gives the daemon its one peer.
    conf: str | None = None
    # False for daemons older than Bitcoin Core 0.17 (Dogecoin 1.14): no [regtest] sections.
    conf_sections: bool = True
    p2p_port: int | None = None
    onion_port: int | None = None
    tor: bool = False  # the daemon's Tor onion service (listenonion), off unless asked
    # Obsolete: the companion used to listen on its own p2p port; it now connects to the
    # daemon and listens nowhere. Still read so that older coin files load.
    peer_p2p_port: int | None = None
    peer_rpc_port: int | None = None
    template_rules: tuple[str, ...] = ("segwit",)
    template_refresh: float = 30.0
    poll_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class StratumSection:
    host: str
    ports: tuple[PortConfig, ...]
    max_connections: int = 20000
    max_connections_per_ip: int = 1000
    idle_timeout: float = 600.0
    subscribe_timeout: float = 30.0
    ban_seconds: float = 600.0
    ban_invalid_percent: float = 50.0
    ban_min_shares: int = 20
    extranonce2_size: int = 4
    pool_tag: str = "/multipool/"


@dataclass(frozen=True, slots=True)
class PoolSection:
    # None: the engine takes an address of the pool wallet on first start and keeps it.
    address: str | None
    scheme: str = "pplns"
    fee_percent: float = 1.0
    fee_address: str | None = None
    min_payout: float = 0.1
    payment_interval: float = 600.0
    database: str | None = None
    # PPLNS window N = pplns_factor x network difficulty, in share difficulty.
    pplns_factor: float = 2.0
    # Most recipients in one payment transaction; bigger runs are split.
    payment_max_recipients: int = 200
    # Who pays the network fee of a payment: "pool" (the fee account) or "miners".
    payment_fee: str = "pool"
    # Depth at which a payment is final, and at which a conflicting transaction proves
    # that it never will be (then its amounts are credited back).
    payment_confirmations: int = 6
    # The payment run's lock: taken over by another run only after this long.
    payment_lock_ttl: float = 900.0
    # Where the engine keeps its state (spool, default SQLite database, pool address);
    # None: beside the coin file.
    state_dir: str | None = None
    # Where the engine publishes status.json for the web process (web/<prefix>/);
    # None: nothing is published.
    public_dir: str | None = None


@dataclass(frozen=True, slots=True)
class CoinConfig:
    """A whole coin.toml, validated."""

    path: str
    coin: CoinSection
    daemon: DaemonSection
    stratum: StratumSection
    pool: PoolSection
    network: NetworkParams
    payout_script: bytes = field(repr=False)


class _Section:
    """Reads typed values out of one TOML table, remembering which keys were used so
    that leftovers can be refused as unknown."""

    def __init__(self, table: object, file: str, name: str):
        if not isinstance(table, dict):
            raise ConfigError("must be a table", file=file, key=name)
        self.table: dict[str, Any] = table
        self.file = file
        self.name = name
        self.used: set[str] = set()

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(reason, file=self.file, key=f"{self.name}.{key}")

    def _get(self, key: str, kind: type | tuple[type, ...], default: Any, what: str) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is _REQUIRED:
                raise self.error(key, "is required")
            return default
        value = self.table[key]
        # bool is an int subclass: refuse true/false where a number is meant.
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(key, f"must be {what}, got {value!r}")
        if not isinstance(value, kind):
            raise self.error(key, f"must be {what}, got {value!r}")
        return value

    def string(self, key: str, default: Any = None, *, choices: tuple[str, ...] = ()) -> Any:
        value = self._get(key, str, default, "a string")
        if choices and value is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def number(self, key: str, default: Any = None, *, positive: bool = False) -> Any:
        value = self._get(key, (int, float), default, "a number")
        if value is not None:
            if positive and not value > 0:
                raise self.error(key, f"must be greater than 0, got {value!r}")
            if not positive and value < 0:
                raise self.error(key, f"must not be negative, got {value!r}")
            return float(value)
        return value

    def integer(self, key: str, default: Any = None, *, low: int = 0, high: int = 2**31) -> Any:
        value = self._get(key, int, default, "an integer")
        if value is not None and not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, key: str, default: Any = None) -> Any:
        return self._get(key, bool, default, "true or false")

    def strings(self, key: str, default: Any = ()) -> tuple[str, ...]:
        value = self._get(key, list, _REQUIRED if default is _REQUIRED else list(default),
                          "a list of strings")
        if not all(isinstance(item, str) for item in value):
            raise self.error(key, "must be a list of strings")
        return tuple(value)

    def check_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")


_REQUIRED = object()


def _parse_port(raw: object, file: str, index: int) -> PortConfig:
    s = _Section(raw, file, f"stratum.ports[{index}]")
    port = PortConfig(
        port=s.integer("port", _REQUIRED, low=1, high=65535),
        difficulty=s.number("difficulty", _REQUIRED, positive=True),
        vardiff=s.boolean("vardiff", True),
        min_difficulty=s.number("min_difficulty", None, positive=True),
        max_difficulty=s.number("max_difficulty", None, positive=True),
        target_share_time=s.number("target_share_time", 15.0, positive=True),
        retarget_interval=s.number("retarget_interval", 90.0, positive=True),
        variance_percent=s.number("variance_percent", 30.0),
        tls=s.boolean("tls", False),
        tls_cert=s.string("tls_cert"),
        tls_key=s.string("tls_key"),
    )
    s.check_unknown()
    if port.floor > port.difficulty or port.ceiling < port.difficulty:
        raise s.error("difficulty", "must lie between min_difficulty and max_difficulty")
    if port.tls and not (port.tls_cert and port.tls_key):
        raise s.error("tls", "a TLS port needs tls_cert and tls_key")
    return port


def _check(file: str, key: str, ok: bool, reason: str) -> None:
    if not ok:
        raise ConfigError(reason, file=file, key=key)


def _address_script(address: str, network: NetworkParams, file: str, key: str) -> bytes:
    try:
        return address_to_script(address, network)
    except AddressError as exc:
        raise ConfigError(str(exc), file=file, key=key) from None


def parse_coin_config(data: dict[str, Any], file: str) -> CoinConfig:
    """Given the parsed TOML of a coin file and its name (for messages), return the
    validated :class:`CoinConfig` or raise :class:`ConfigError` naming file, key, reason."""
    unknown = sorted(set(data) - {"coin", "daemon", "stratum", "pool"})
    if unknown:
        raise ConfigError("unknown section", file=file, key=unknown[0])
    for section in ("coin", "daemon", "stratum", "pool"):
        _check(file, section, section in data, "section is required")

    c = _Section(data["coin"], file, "coin")
    coin = CoinSection(
        name=c.string("name", _REQUIRED),
        prefix=c.string("prefix", _REQUIRED),
        symbol=c.string("symbol", _REQUIRED),
        algorithm=c.string("algorithm", _REQUIRED, choices=tuple(ALGORITHMS)),
        network=c.string("network", "main", choices=("main", "test", "regtest")),
    )
    c.check_unknown()
    _check(file, "coin.prefix", bool(coin.prefix) and set(coin.prefix) <= PREFIX_CHARS
           and len(coin.prefix) <= 16 and coin.prefix[0].isalpha(),
           f"must be 1-16 lowercase letters and digits starting with a letter, got "
           f"{coin.prefix!r}")
    try:
        network = get_network(coin.name, coin.network)
    except ConfigError as exc:
        raise ConfigError(exc.reason, file=file, key="coin.name") from None

    d = _Section(data["daemon"], file, "daemon")
    daemon = DaemonSection(
        rpc_url=d.string("rpc_url", _REQUIRED),
        rpc_user=d.string("rpc_user"),
        rpc_password=d.string("rpc_password"),
        rpc_cookie=d.string("rpc_cookie"),
        wallet=d.string("wallet"),
        zmq_hashblock=d.string("zmq_hashblock"),
        source=d.string("source", "package", choices=("package", "git", "binary")),
        package=d.string("package"),
        git=d.string("git"),
        ref=d.string("ref"),
        build=d.strings("build", ()),
        binary=d.string("binary"),
        conf=d.string("conf"),
        conf_sections=d.boolean("conf_sections", True),
        p2p_port=d.integer("p2p_port", None, low=1, high=65535),
        onion_port=d.integer("onion_port", None, low=1, high=65535),
        tor=d.boolean("tor", False),
        peer_p2p_port=d.integer("peer_p2p_port", None, low=1, high=65535),
        peer_rpc_port=d.integer("peer_rpc_port", None, low=1, high=65535),
        template_rules=d.strings("template_rules", _default_rules(coin.name)),
        template_refresh=d.number("template_refresh", 30.0, positive=True),
        poll_interval=d.number("poll_interval", 1.0, positive=True),
    )
    d.check_unknown()
    url = urlsplit(daemon.rpc_url)
    _check(file, "daemon.rpc_url", url.scheme in ("http", "https") and bool(url.hostname),
           f"must be an http:// URL with a host, got {daemon.rpc_url!r}")
    has_password = daemon.rpc_user is not None and daemon.rpc_password is not None
    _check(file, "daemon.rpc_user", has_password or daemon.rpc_cookie is not None,
           "give rpc_user and rpc_password, or rpc_cookie")
    _check(file, "daemon.rpc_cookie", not (has_password and daemon.rpc_cookie),
           "give either rpc_user/rpc_password or rpc_cookie, not both")

    s = _Section(data["stratum"], file, "stratum")
    ports_raw = s._get("ports", list, _REQUIRED, "a list of port tables")
    _check(file, "stratum.ports", len(ports_raw) > 0, "needs at least one port")
    ports = tuple(_parse_port(raw, file, i) for i, raw in enumerate(ports_raw))
    numbers = [p.port for p in ports]
    _check(file, "stratum.ports", len(set(numbers)) == len(numbers),
           f"port numbers repeat: {numbers}")
    stratum = StratumSection(
        host=s.string("host", "0.0.0.0"),  # noqa: S104 - miners connect from anywhere
        ports=ports,
        max_connections=s.integer("max_connections", 20000, low=1, high=10**6),
        max_connections_per_ip=s.integer("max_connections_per_ip", 1000, low=1, high=10**6),
        idle_timeout=s.number("idle_timeout", 600.0, positive=True),
        subscribe_timeout=s.number("subscribe_timeout", 30.0, positive=True),
        ban_seconds=s.number("ban_seconds", 600.0),
        ban_invalid_percent=s.number("ban_invalid_percent", 50.0, positive=True),
        ban_min_shares=s.integer("ban_min_shares", 20, low=1),
        extranonce2_size=s.integer("extranonce2_size", 4, low=2, high=8),
        pool_tag=s.string("pool_tag", "/multipool/"),
    )
    s.check_unknown()
    _check(file, "stratum.pool_tag", len(stratum.pool_tag.encode()) <= 40,
           "must be at most 40 bytes so the coinbase script stays under 100 bytes")

    p = _Section(data["pool"], file, "pool")
    pool = PoolSection(
        address=p.string("address"),
        scheme=p.string("scheme", "pplns", choices=("pplns", "prop", "solo")),
        fee_percent=p.number("fee_percent", 1.0),
        fee_address=p.string("fee_address"),
        min_payout=p.number("min_payout", 0.1, positive=True),
        payment_interval=p.number("payment_interval", 600.0, positive=True),
        database=p.string("database"),
        pplns_factor=p.number("pplns_factor", 2.0, positive=True),
        payment_max_recipients=p.integer("payment_max_recipients", 200, low=1, high=5000),
        payment_fee=p.string("payment_fee", "pool", choices=("pool", "miners")),
        payment_confirmations=p.integer("payment_confirmations", 6, low=1, high=1000),
        payment_lock_ttl=p.number("payment_lock_ttl", 900.0, positive=True),
        state_dir=p.string("state_dir"),
        public_dir=p.string("public_dir"),
    )
    p.check_unknown()
    _check(file, "pool.fee_percent", pool.fee_percent < 100, "must be below 100")
    _check(file, "pool.min_payout", to_units(pool.min_payout, network.decimals) > 0,
           f"must be at least one smallest unit (10^-{network.decimals}), got "
           f"{pool.min_payout!r}")
    payout_script = (b"" if pool.address is None
                     else _address_script(pool.address, network, file, "pool.address"))
    if pool.fee_address is not None:
        _address_script(pool.fee_address, network, file, "pool.fee_address")

    return CoinConfig(path=file, coin=coin, daemon=daemon, stratum=stratum, pool=pool,
                      network=network, payout_script=payout_script)


def with_pool_address(config: CoinConfig, address: str) -> CoinConfig:
    """Given a config without ``[pool] address`` and an address of the pool wallet, return
    the config with it (checked against the coin's network like one from the file)."""
    script = _address_script(address, config.network, config.path, "pool.address")
    return replace(config, pool=replace(config.pool, address=address), payout_script=script)


def _default_rules(coin_name: str) -> tuple[str, ...]:
    # Litecoin refuses getblocktemplate (-8) unless both rules are named.
    return ("mweb", "segwit") if coin_name == "litecoin" else ("segwit",)


def to_units(coins: float | str | Decimal, decimals: int) -> int:
    """Given an amount in coins as the config or a daemon writes it, return it in the
    coin's smallest unit, rounded down; exact for any amount with at most ``decimals``
    digits after the point (0.1 is 10000000, never 9999999).

    >>> to_units(0.1, 8), to_units("1.23456789", 8), to_units(2, 6)
    (10000000, 123456789, 2000000)
    """
    value = Decimal(str(coins)) if not isinstance(coins, Decimal) else coins
    return int((value * 10**decimals).to_integral_value(rounding=ROUND_DOWN))


def to_coins(units: int, decimals: int) -> Decimal:
    """Given an amount in the smallest unit, return it in coins, exactly.

    >>> to_coins(10000000, 8)
    Decimal('0.10000000')
    """
    return Decimal(units).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals))


def format_coins(units: int, decimals: int) -> str:
    """Given an amount in the smallest unit, return it in coins for people to read.

    >>> format_coins(0, 8), format_coins(150000000, 8)
    ('0.00000000', '1.50000000')
    """
    return format(to_coins(units, decimals), "f")


def load_coin_config(path: str | Path) -> CoinConfig:
    """Given the path of a coin TOML file, return its validated config."""
    return parse_coin_config(_read_toml(path), str(path))


# The most web processes `[web] workers` and `web serve --workers` take.
MAX_WEB_WORKERS = 32


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """A whole multipool.toml, validated: the server's root, mode and shared settings."""

    path: str
    root: str
    mode: str = "system"  # system | local
    public_host: str = "localhost"
    # "sqlite" (a file per coin in pool/<prefix>/), or the URL of a PostgreSQL or MariaDB
    # account that may create databases and roles: one database and role per coin.
    database: str = "sqlite"
    web_listen: str = "127.0.0.1:8080"
    web_routing: str = "path"  # path | subdomain
    web_server: str = "nginx"  # nginx | apache: the site `init` writes in front of the app
    # Prometheus /metrics: its own listener, never proxied ("" turns it off).
    web_metrics_listen: str = "127.0.0.1:9108"
    # The proxies whose X-Forwarded-For is believed (addresses or networks).
    web_trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # Origins allowed to read /api/v1 from a browser ("*": any); none by default.
    web_cors_origins: tuple[str, ...] = ()
    # Requests per second per client IP on /api/v1 (bursts of ten times as many).
    web_rate_limit: float = 10.0
    # Minutes without a share after which a worker is shown offline.
    web_offline_after: int = 10
    # Processes serving the pages (0: one per core, up to 4).
    web_workers: int = 0


def parse_server_config(data: dict[str, Any], file: str) -> ServerConfig:
    """Given the parsed TOML of multipool.toml and its name (for messages), return the
    validated :class:`ServerConfig` or raise :class:`ConfigError`."""
    unknown = sorted(set(data) - {"server", "database", "web"})
    if unknown:
        raise ConfigError("unknown section", file=file, key=unknown[0])
    _check(file, "server", "server" in data, "section is required")
    s = _Section(data["server"], file, "server")
    root = s.string("root", _REQUIRED)
    mode = s.string("mode", "system", choices=("system", "local"))
    public_host = s.string("public_host", "localhost")
    s.check_unknown()
    _check(file, "server.root", root.startswith("/"), f"must be an absolute path, got {root!r}")
    d = _Section(data.get("database", {}), file, "database")
    database = d.string("url", "sqlite")
    d.check_unknown()
    scheme = urlsplit(database).scheme.split("+")[0]
    _check(file, "database.url", database == "sqlite"
           or scheme in ("postgresql", "postgres", "mysql", "mariadb"),
           f"must be sqlite or a postgresql:// or mysql:// URL, got {database!r}")
    w = _Section(data.get("web", {}), file, "web")
    listen = w.string("listen", "127.0.0.1:8080")
    routing = w.string("routing", "path", choices=("path", "subdomain"))
    web_server = w.string("server", "nginx", choices=("nginx", "apache"))
    metrics_listen = w.string("metrics_listen", "127.0.0.1:9108")
    proxies = w.strings("trusted_proxies", ("127.0.0.1", "::1"))
    cors = w.strings("cors_origins", ())
    rate_limit = w.number("rate_limit", 10.0, positive=True)
    offline_after = w.integer("offline_after", 10, low=1, high=24 * 60)
    web_workers = w.integer("workers", 0, low=0, high=MAX_WEB_WORKERS)
    w.check_unknown()
    for key, value in (("listen", listen), ("metrics_listen", metrics_listen)):
        if key == "metrics_listen" and value == "":
            continue
        host, _, port = value.rpartition(":")
        _check(file, f"web.{key}", bool(host) and port.isdigit() and 0 < int(port) < 65536,
               f"must be HOST:PORT, got {value!r}")
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"must be IP addresses or networks, got {proxy!r}", file=file,
                              key="web.trusted_proxies") from None
    for origin in cors:
        parts = urlsplit(origin)
        _check(file, "web.cors_origins", origin == "*" or (
            parts.scheme in ("http", "https") and bool(parts.netloc)
            and not parts.path and not parts.query),
            f"must be \"*\" or origins like https://example.org, got {origin!r}")
    return ServerConfig(path=file, root=root, mode=mode, public_host=public_host,
                        database=database, web_listen=listen, web_routing=routing,
                        web_server=web_server, web_metrics_listen=metrics_listen,
                        web_trusted_proxies=proxies, web_cors_origins=cors,
                        web_rate_limit=rate_limit, web_offline_after=offline_after,
                        web_workers=web_workers)


def _read_toml(path: str | Path) -> dict[str, Any]:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None


def load_server_config(path: str | Path) -> ServerConfig:
    """Given the path of multipool.toml, return its validated config."""
    return parse_server_config(_read_toml(path), str(path))
