"""The shipped coin catalogue: one TOML file per coin describing how to get its daemon,
its default ports on each network and the pool defaults `multipool coin add` starts from.

    definition = load_definition("litecoin")            # a catalogue name
    definition = load_definition("./mycoin.toml")       # or an operator's own file
    definition.ports_for("regtest").rpc                  # 19443

An operator's file has the same format as the shipped ones (see ``litecoin.toml`` beside
this module). Like coin.toml, a definition is validated whole before anything uses it:
unknown sections and keys are refused and every error is a ConfigError naming the file,
the key and the reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from multipool.chain.networks import get_network
from multipool.chain.pow import ALGORITHMS
from multipool.config import _REQUIRED, PREFIX_CHARS, _Section
from multipool.errors import ConfigError

NETWORK_NAMES = ("main", "test", "regtest")
SOURCES = ("package", "git", "binary")
SCHEMES = ("pplns", "prop", "solo")
PORT_KINDS = ("rpc", "p2p", "stratum")
_SECTIONS = ("coin", "daemon", "ports", "stratum", "pool")
_REQUIRED_SECTIONS = ("coin", "daemon", "ports", "stratum")


@dataclass(frozen=True, slots=True)
class NetworkPorts:
    """The default ports of a coin on one network."""

    rpc: int
    p2p: int
    stratum: int

    def as_list(self) -> list[int]:
        return [self.rpc, self.p2p, self.stratum]


@dataclass(frozen=True)
class CoinDefinition:
    """One validated catalogue entry (or an operator's own definition file)."""

    file: str  # where it was read from, for messages
    name: str  # a coin multipool.chain.networks knows
    prefix: str  # default prefix; `coin add --prefix` overrides
    symbol: str
    algorithm: str  # a key of multipool.chain.pow.ALGORITHMS
    source: str  # package | git | binary
    package: str | None
    binary: str  # absolute (package, binary) or inside the built tree (git)
    git: str | None
    ref: str | None
    build: tuple[str, ...]
    conf: str  # the daemon's config file name, e.g. "litecoin.conf"
    zmq: bool  # the daemon publishes hashblock over ZMQ
    # Daemons before Bitcoin Core 0.17 (Dogecoin 1.14) know no [main]/[test]/[regtest]
    # sections in their config file: their settings must be written flat.
    conf_sections: bool
    template_rules: tuple[str, ...] | None  # None: the engine's default for the coin
    ports: dict[str, NetworkPorts] = field(hash=False)
    difficulty: float  # starting difficulty of the first stratum port
    regtest_difficulty: float
    scheme: str
    fee_percent: float
    min_payout: float
    payment_interval: float

    @property
    def networks(self) -> tuple[str, ...]:
        """The networks this definition has ports for, in main, test, regtest order."""
        return tuple(n for n in NETWORK_NAMES if n in self.ports)

    def ports_for(self, network: str) -> NetworkPorts:
        """Given a network name, return its default ports or raise ConfigError."""
        if network not in self.ports:
            raise ConfigError(f"no default ports for network {network!r}; this definition "
                              f"has: {', '.join(self.networks)}", file=self.file,
                              key=f"ports.{network}")
        return self.ports[network]

    def difficulty_for(self, network: str) -> float:
        """The starting stratum difficulty on ``network``."""
        return self.regtest_difficulty if network == "regtest" else self.difficulty


def _catalog_dir() -> Path:
    return Path(str(resources.files(__name__)))


def catalog_names() -> list[str]:
    """The names of the shipped coin definitions, sorted."""
    return sorted(p.stem for p in _catalog_dir().glob("*.toml"))


def _is_path(name_or_path: str) -> bool:
    return "/" in name_or_path or name_or_path.endswith(".toml")


def load_definition(name_or_path: str) -> CoinDefinition:
    """Given a catalogue name ("litecoin") or the path of a definition file (anything
    with a "/" or ending in ".toml"), return the validated :class:`CoinDefinition`."""
    if _is_path(name_or_path):
        path = Path(name_or_path)
    else:
        names = catalog_names()
        if name_or_path not in names:
            raise ConfigError(f"unknown coin {name_or_path!r}; the catalogue has: "
                              f"{', '.join(names)} (or give the path of a coin definition "
                              "file ending in .toml)")
        path = _catalog_dir() / f"{name_or_path}.toml"
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None
    return parse_definition(data, file)


def _check(file: str, key: str, ok: bool, reason: str) -> None:
    if not ok:
        raise ConfigError(reason, file=file, key=key)


def parse_definition(data: dict[str, Any], file: str) -> CoinDefinition:
    """Given the parsed TOML of a definition file and its name (for messages), return the
    validated definition or raise ConfigError naming file, key and reason."""
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError("unknown section", file=file, key=unknown[0])
    for section in _REQUIRED_SECTIONS:
        _check(file, section, section in data, "section is required")

    c = _Section(data["coin"], file, "coin")
    name = c.string("name", _REQUIRED)
    prefix = c.string("prefix", _REQUIRED)
    symbol = c.string("symbol", _REQUIRED)
    algorithm = c.string("algorithm", _REQUIRED, choices=tuple(ALGORITHMS))
    c.check_unknown()
    try:
        get_network(name, "main")
    except ConfigError as exc:
        raise ConfigError(exc.reason, file=file, key="coin.name") from None
    _check(file, "coin.prefix", bool(prefix) and set(prefix) <= PREFIX_CHARS
           and len(prefix) <= 16 and prefix[0].isalpha(),
           f"must be 1-16 lowercase letters and digits starting with a letter, got {prefix!r}")
    _check(file, "coin.symbol", 0 < len(symbol) <= 10 and symbol.isalnum(),
           f"must be 1-10 letters and digits, got {symbol!r}")

    d = _Section(data["daemon"], file, "daemon")
    source = d.string("source", _REQUIRED, choices=SOURCES)
    package = d.string("package")
    binary = d.string("binary", _REQUIRED)
    git = d.string("git")
    ref = d.string("ref")
    build = d.strings("build", ())
    conf = d.string("conf", _REQUIRED)
    zmq = d.boolean("zmq", False)
    conf_sections = d.boolean("conf_sections", True)
    rules = d._get("template_rules", list, None, "a list of strings")
    if rules is not None and not all(isinstance(rule, str) and rule for rule in rules):
        raise d.error("template_rules", "must be a list of non-empty strings")
    d.check_unknown()
    _check_source(file, source, package=package, binary=binary, git=git, ref=ref, build=build)
    _check(file, "daemon.conf", bool(conf) and "/" not in conf and not conf.startswith("."),
           f"must be a file name without \"/\", got {conf!r}")

    ports = _parse_ports(data["ports"], file, name)

    s = _Section(data["stratum"], file, "stratum")
    difficulty = s.number("difficulty", _REQUIRED, positive=True)
    regtest_difficulty = s.number("regtest_difficulty", difficulty, positive=True)
    s.check_unknown()

    p = _Section(data.get("pool", {}), file, "pool")
    scheme = p.string("scheme", "pplns", choices=SCHEMES)
    fee_percent = p.number("fee_percent", 1.0)
    min_payout = p.number("min_payout", 0.1, positive=True)
    payment_interval = p.number("payment_interval", 600.0, positive=True)
    p.check_unknown()
    _check(file, "pool.fee_percent", fee_percent < 100, f"must be below 100, got {fee_percent!r}")

    return CoinDefinition(
        file=file, name=name, prefix=prefix, symbol=symbol, algorithm=algorithm,
        source=source, package=package, binary=binary, git=git, ref=ref, build=build,
        conf=conf, zmq=zmq, conf_sections=conf_sections,
        template_rules=tuple(rules) if rules is not None else None, ports=ports,
        difficulty=float(difficulty), regtest_difficulty=float(regtest_difficulty),
        scheme=scheme, fee_percent=fee_percent, min_payout=min_payout,
        payment_interval=payment_interval,
    )


def _check_source(file: str, source: str, *, package: str | None, binary: str, git: str | None,
                  ref: str | None, build: tuple[str, ...]) -> None:
    """What each way of getting the daemon needs."""
    needed = f'is required when source = "{source}"'
    if source == "package":
        _check(file, "daemon.package", bool(package), needed)
    if source == "git":
        _check(file, "daemon.git", bool(git), needed)
        _check(file, "daemon.ref", bool(ref), needed)
        _check(file, "daemon.build", bool(build) and all(step.strip() for step in build),
               f'needs at least one command when source = "git", got {list(build)!r}')
        parts = PurePosixPath(binary).parts
        _check(file, "daemon.binary", bool(binary) and not binary.startswith("/")
               and ".." not in parts,
               f'must be a path inside the built tree (relative, without "..") when '
               f'source = "git", got {binary!r}')
    else:
        _check(file, "daemon.binary", binary.startswith("/"),
               f'must be an absolute path when source = "{source}", got {binary!r}')


def _parse_ports(raw: object, file: str, coin: str) -> dict[str, NetworkPorts]:
    if not isinstance(raw, dict):
        raise ConfigError("must be a table", file=file, key="ports")
    _check(file, "ports", bool(raw),
           "needs at least one network table: [ports.main], [ports.test] or [ports.regtest]")
    ports: dict[str, NetworkPorts] = {}
    for network in raw:
        try:
            get_network(coin, network)
        except ConfigError as exc:
            raise ConfigError(exc.reason, file=file, key=f"ports.{network}") from None
        t = _Section(raw[network], file, f"ports.{network}")
        numbers = {kind: t.integer(kind, _REQUIRED, low=1, high=65535) for kind in PORT_KINDS}
        t.check_unknown()
        seen: dict[int, str] = {}
        for kind, number in numbers.items():
            if number in seen:
                raise t.error(kind, f"repeats port {number} of ports.{network}.{seen[number]}")
            seen[number] = kind
        ports[network] = NetworkPorts(**numbers)
    return ports
