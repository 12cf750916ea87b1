"""The pools' status files, read and judged: pure code apart from :class:`StatusReader`.

Each coin's pool engine writes ``<root>/web/<prefix>/status.json`` (atomically, every
30 s). The web process only reads those files; it needs no secret and no database for
the index page. A file is hostile input as far as this module is concerned: it is read
without following a symlink, at most :data:`MAX_STATUS_BYTES`, and every value is checked
for its type before anyone shows it.

States of a pool:

- ``online``: the status is fresh (written in the last :data:`STALE_AFTER` seconds) and
  the stratum ports are open;
- ``degraded``: fresh and open, but a background service of the engine (block tracking,
  payments, stats, ...) is failing and retrying: ``reason`` names each with its reason;
- ``closed``: fresh, but the stratum ports are closed (the daemon is syncing, or down:
  ``reason`` says why, in the engine's words);
- ``offline``: the status is stale, or there is none (the engine is not running);
- ``unreadable``: the file is there but is not a status this version understands.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from multipool.errors import PoolError

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
STATUS_FILE = "status.json"
STATUS_VERSION = 1
# The engines write every 30 s: four missed writes and the pool is called offline.
STALE_AFTER = 120.0
# The window of the hashrate and miner counts the engines publish (their
# public_status.WINDOW_SECONDS, as `multipool status` shows them).
HASHRATE_WINDOW = 600.0
# A status is a few hundred bytes; anything this large is not one.
MAX_STATUS_BYTES = 64 * 1024
# Strings longer than this are not names, symbols or reasons.
MAX_TEXT = 200
# A broken file is logged at most once a minute, not once a request.
WARN_INTERVAL = 60.0

STATES = ("online", "degraded", "closed", "offline", "unreadable")
# A service's name: lowercase, as the engine names them (shares, blocks, payments, ...).
SERVICE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SERVICE_STATES = ("ok", "degraded")
MAX_SERVICES = 32


class StatusError(PoolError, ValueError):
    """A status file that cannot be read or is not a valid status."""


@dataclass(frozen=True, slots=True)
class StratumPort:
    port: int
    difficulty: float | None
    vardiff: bool
    tls: bool


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One background service of the engine, as it reports itself."""

    name: str
    state: str  # one of SERVICE_STATES
    reason: str | None = None  # why it is degraded, in the engine's words
    since: datetime | None = None  # when it became so

    @property
    def degraded(self) -> bool:
        return self.state == "degraded"


DATABASE_BACKENDS = ("sqlite", "postgresql", "mysql")
# A path or host name: longer than any the engine would publish is not one.
MAX_LOCATION = 4096


@dataclass(frozen=True, slots=True)
class DatabaseLocation:
    """Where a pool's database is, as its engine publishes it: the SQLite file (``path``,
    absolute), or the server's ``host``, ``port`` and database ``name``."""

    backend: str  # one of DATABASE_BACKENDS
    path: str | None = None
    host: str | None = None
    port: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class EngineCounters:
    """What the engine counted since it started (``counters`` of status.json)."""

    shares_accepted: int | None = None
    # (reason, count), as the engine names the reasons (stale, duplicate, ...).
    shares_rejected: tuple[tuple[str, int], ...] = ()
    blocks_submitted: int | None = None
    blocks_accepted: int | None = None
    blocks_refused: int | None = None
    connections: int | None = None
    loop_lag_p99_ms: float | None = None
    loop_lag_max_ms: float | None = None
    loop_lag_window: float | None = None


@dataclass(frozen=True, slots=True)
class PaymentTotal:
    """The payment batches in one state and what they pay, in coins."""

    state: str
    batches: int
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PoolTotals:
    """Every block by status and payment batch by state (``totals`` of status.json)."""

    blocks: tuple[tuple[str, int], ...] = ()
    payments: tuple[PaymentTotal, ...] = ()


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """One status.json, validated. Every fact but ``updated`` may be unknown (None)."""

    updated: datetime
    name: str | None = None
    symbol: str | None = None
    algorithm: str | None = None
    network: str | None = None
    stratum_open: bool | None = None
    ports: tuple[StratumPort, ...] = ()
    synced: bool | None = None
    blocks: int | None = None
    headers: int | None = None
    peers: int | None = None
    daemon_reason: str | None = None
    scheme: str | None = None
    fee_percent: float | None = None
    min_payout: Decimal | None = None
    hashrate: float | None = None
    miners: int | None = None
    workers: int | None = None
    last_block_height: int | None = None
    last_block_time: datetime | None = None
    last_block_status: str | None = None
    found_24h: int | None = None
    last_payment_time: datetime | None = None
    last_payment_status: str | None = None
    # None: the engine reports no services (an older engine).
    services: tuple[ServiceHealth, ...] | None = None
    # None: an older engine, or (totals) the database did not answer.
    counters: EngineCounters | None = None
    totals: PoolTotals | None = None
    # Confirmations a block needs to be confirmed; None from an older engine.
    maturity: int | None = None
    # The network's hashrate (hashes per second, the daemon's estimate) and difficulty.
    network_hashrate: float | None = None
    network_difficulty: float | None = None
    # None: an older engine, which does not say where its database is.
    database: DatabaseLocation | None = None

    @property
    def degraded(self) -> tuple[ServiceHealth, ...]:
        """The services that report themselves degraded."""
        return tuple(s for s in self.services or () if s.degraded)


class _Object:
    """Typed reads out of one JSON object of a status; null (or a missing key) is None."""

    def __init__(self, data: object, where: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise StatusError(f"{where}: must be an object")
        self.data: dict[str, Any] = data
        self.where = where

    def _error(self, key: str, what: str, value: object) -> StatusError:
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        return StatusError(f"{self.where}{key}: must be {what}, got {shown}")

    def obj(self, key: str) -> _Object:
        return _Object(self.data.get(key), f"{self.where}{key}.")

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not (isinstance(value, str) and len(value) <= MAX_TEXT):
            raise self._error(key, f"a string of at most {MAX_TEXT} characters", value)
        return value

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self._error(key, "true or false", value)
        return value

    def integer(self, key: str, *, minimum: int = 0, maximum: int = 2**63) -> int | None:
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not minimum <= value <= maximum):
            raise self._error(key, f"an integer from {minimum} to {maximum}", value)
        return value

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self._error(key, "a number >= 0", value)
        return float(value)

    def time(self, key: str) -> datetime | None:
        value = self.data.get(key)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise self._error(key, "an ISO 8601 time with a UTC offset", value)
        return parsed

    def decimal(self, key: str) -> Decimal | None:
        value = self.data.get(key)
        if value is None:
            return None
        try:
            amount = Decimal(value) if isinstance(value, str) and len(value) <= 40 else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount < 0:
            raise self._error(key, "an amount in coins as a decimal string", value)
        return amount


def _no_constants(name: str) -> float:
    raise StatusError(f"{name} is not a number a status may hold")


def parse_status(data: bytes, prefix: str) -> PoolStatus:
    """Given the bytes of ``web/<prefix>/status.json``, return the validated status, or
    raise :class:`StatusError` with a short reason.

    >>> parse_status(b'{"version": 1, "updated": "2026-11-30T12:00:00+00:00",'
    ...              b' "coin": {"prefix": "ltc"}}', "ltc").updated.year
    2026
    """
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise StatusError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise StatusError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except RecursionError:
        raise StatusError("not JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise StatusError("must be an object")
    top = _Object(document, "")
    version = document.get("version")
    if version != STATUS_VERSION or isinstance(version, bool):
        raise StatusError(f"version: must be {STATUS_VERSION}, got {version!r}")
    updated = top.time("updated")
    if updated is None:
        raise StatusError("updated: is required")
    coin = top.obj("coin")
    written_for = coin.text("prefix")
    if written_for is not None and written_for != prefix:
        raise StatusError(f"coin.prefix: is {written_for!r} in the directory of {prefix!r}")
    stratum = top.obj("stratum")
    raw_ports = stratum.data.get("ports")
    if raw_ports is None:
        raw_ports = []
    if not isinstance(raw_ports, list) or len(raw_ports) > 64:
        raise StatusError("stratum.ports: must be a list of at most 64 ports")
    ports = []
    for index, item in enumerate(raw_ports):
        entry = _Object(item, f"stratum.ports[{index}].")
        port = entry.integer("port", minimum=1, maximum=65535)
        if port is None:
            raise StatusError(f"stratum.ports[{index}].port: is required")
        ports.append(StratumPort(port=port, difficulty=entry.number("difficulty"),
                                 vardiff=bool(entry.flag("vardiff")),
                                 tls=bool(entry.flag("tls"))))
    daemon, pool, network = top.obj("daemon"), top.obj("pool"), top.obj("network")
    blocks, payments = top.obj("blocks"), top.obj("payments")
    return PoolStatus(
        services=_parse_services(document.get("services")),
        maturity=coin.integer("maturity", maximum=1_000_000),
        network_hashrate=network.number("hashrate"),
        network_difficulty=network.number("difficulty"),
        database=_parse_database(document.get("database")),
        updated=updated,
        name=coin.text("name"), symbol=coin.text("symbol"),
        algorithm=coin.text("algorithm"), network=coin.text("network"),
        stratum_open=stratum.flag("open"), ports=tuple(ports),
        synced=daemon.flag("synced"), blocks=daemon.integer("blocks"),
        headers=daemon.integer("headers"), peers=daemon.integer("peers"),
        daemon_reason=daemon.text("reason"),
        scheme=pool.text("scheme"), fee_percent=pool.number("fee_percent"),
        min_payout=pool.decimal("min_payout"), hashrate=pool.number("hashrate"),
        miners=pool.integer("miners"), workers=pool.integer("workers"),
        last_block_height=blocks.integer("last_height"),
        last_block_time=blocks.time("last_time"),
        last_block_status=blocks.text("last_status"),
        found_24h=blocks.integer("found_24h"),
        last_payment_time=payments.time("last_time"),
        last_payment_status=payments.text("last_status"),
        counters=_parse_counters(document.get("counters")),
        totals=_parse_totals(document.get("totals")),
    )


def _names(raw: object, where: str) -> list[tuple[str, object]]:
    """An object keyed by lowercase names (reasons, statuses), as sorted pairs."""
    if not isinstance(raw, dict) or len(raw) > MAX_SERVICES:
        raise StatusError(f"{where}: must be an object of at most {MAX_SERVICES} names")
    for name in raw:
        if not SERVICE_RE.fullmatch(name):
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise StatusError(f"{where}: {shown!r} is not a name")
    return sorted(raw.items())


def _counts(raw: object, where: str) -> tuple[tuple[str, int], ...]:
    """An object of counts keyed by name (reasons, statuses) as sorted (name, count)
    pairs; none when absent."""
    if raw is None:
        return ()
    counts = _Object(raw, f"{where}.")
    return tuple((name, counts.integer(name) or 0) for name, _ in _names(raw, where))


def _parse_counters(raw: object) -> EngineCounters | None:
    """``counters``: shares by result and reason, blocks submitted, connections, loop
    lag; None when absent (an older engine)."""
    if raw is None:
        return None
    top = _Object(raw, "counters.")
    shares, blocks, lag = top.obj("shares"), top.obj("blocks"), top.obj("loop_lag")
    return EngineCounters(
        shares_accepted=shares.integer("accepted"),
        shares_rejected=_counts(shares.data.get("rejected"), "counters.shares.rejected"),
        blocks_submitted=blocks.integer("submitted"),
        blocks_accepted=blocks.integer("accepted"), blocks_refused=blocks.integer("refused"),
        connections=top.integer("connections"),
        loop_lag_p99_ms=lag.number("p99_ms"), loop_lag_max_ms=lag.number("max_ms"),
        loop_lag_window=lag.number("window_seconds"))


def _parse_totals(raw: object) -> PoolTotals | None:
    """``totals``: blocks by status, payment batches by state with their amount; None
    when absent (an older engine, or the database did not answer)."""
    if raw is None:
        return None
    top = _Object(raw, "totals.")
    paid = []
    raw_payments = top.data.get("payments")
    if raw_payments is not None:
        for state, item in _names(raw_payments, "totals.payments"):
            entry = _Object(item, f"totals.payments.{state}.")
            amount = entry.decimal("amount")
            paid.append(PaymentTotal(state, entry.integer("batches") or 0,
                                     Decimal(0) if amount is None else amount))
    return PoolTotals(blocks=_counts(top.data.get("blocks"), "totals.blocks"),
                      payments=tuple(paid))


def _parse_database(raw: object) -> DatabaseLocation | None:
    """``database``: {"backend": "sqlite", "path": ABS} or {"backend": "postgresql" |
    "mysql", "host": str, "port": int | null, "name": str}; None when absent."""
    if raw is None:
        return None
    entry = _Object(raw, "database.")
    backend = entry.data.get("backend")
    if backend not in DATABASE_BACKENDS:
        raise entry._error("backend", " or ".join(repr(b) for b in DATABASE_BACKENDS),
                           backend)

    def location(key: str) -> str:
        value = entry.data.get(key)
        if not (isinstance(value, str) and 0 < len(value) <= MAX_LOCATION
                and "\0" not in value):
            raise entry._error(key, f"a non-empty string of at most {MAX_LOCATION} "
                               "characters", value)
        return value

    if backend == "sqlite":
        path = location("path")
        if not path.startswith("/"):
            raise entry._error("path", "an absolute path", path)
        return DatabaseLocation(backend, path=path)
    return DatabaseLocation(backend, host=location("host"),
                            port=entry.integer("port", minimum=1, maximum=65535),
                            name=location("name"))


def _parse_services(raw: object) -> tuple[ServiceHealth, ...] | None:
    """``services``: {"<name>": {"state": "ok" | "degraded", "reason": str | null,
    "since": ISO time | null}}, sorted by name; None when absent."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > MAX_SERVICES:
        raise StatusError(f"services: must be an object of at most {MAX_SERVICES} services")
    found = []
    for name in sorted(raw):
        if not SERVICE_RE.fullmatch(name):
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise StatusError(f"services: {shown!r} is not a service name")
        if not isinstance(raw[name], dict):
            raise StatusError(f"services.{name}: must be an object")
        entry = _Object(raw[name], f"services.{name}.")
        state = entry.text("state")
        if state not in SERVICE_STATES:
            raise entry._error("state", " or ".join(repr(s) for s in SERVICE_STATES), state)
        found.append(ServiceHealth(name=name, state=state, reason=entry.text("reason"),
                                   since=entry.time("since")))
    return tuple(found)


def stratum_url(public_host: str, port: StratumPort) -> str:
    """Given the server's public host name and a stratum port, return the URL miners use.

    >>> stratum_url("pool.example.org", StratumPort(3333, 16.0, True, False))
    'stratum+tcp://pool.example.org:3333'
    >>> stratum_url("2001:db8::1", StratumPort(3334, None, False, True))
    'stratum+ssl://[2001:db8::1]:3334'
    """
    host = f"[{public_host}]" if ":" in public_host else public_host
    return f"stratum+{'ssl' if port.tls else 'tcp'}://{host}:{port.port}"


def _age(now: datetime, then: datetime | None) -> int | None:
    """Whole seconds from then to now; a time a little in the future counts as now."""
    return None if then is None else max(0, math.floor((now - then).total_seconds()))


@dataclass(frozen=True, slots=True)
class PoolView:
    """What the page and the API say about one pool at one moment."""

    prefix: str
    state: str  # one of STATES
    reason: str | None = None
    status: PoolStatus | None = None
    updated_age: int | None = None
    last_block_age: int | None = None
    last_payment_age: int | None = None

    @property
    def live(self) -> bool:
        """Whether the figures that change by the minute (hashrate, miners) are current."""
        return self.state in ("online", "degraded", "closed")

    @property
    def degraded_services(self) -> tuple[ServiceHealth, ...]:
        """The engine's services that are degraded now (none when the status is stale:
        what it said then may no longer hold)."""
        return self.status.degraded if self.status is not None and self.live else ()

    def as_json(self, public_host: str) -> dict[str, Any]:
        """The API form: numbers as numbers, times as ISO 8601, ages in whole seconds,
        amounts in coins as decimal strings (never floats)."""
        s = self.status
        if s is None:
            return {"prefix": self.prefix, "state": self.state, "reason": self.reason,
                    "name": None, "symbol": None, "algorithm": None, "network": None,
                    "updated": None, "updated_age": None, "stratum": [], "daemon": None,
                    "network_hashrate": None, "network_difficulty": None,
                    "hashrate": None, "miners": None, "workers": None, "scheme": None,
                    "fee_percent": None, "min_payout": None, "last_block": None,
                    "blocks_24h": None, "last_payment": None, "services": None}
        return {
            "prefix": self.prefix, "state": self.state, "reason": self.reason,
            "name": s.name, "symbol": s.symbol, "algorithm": s.algorithm,
            "network": s.network,
            "updated": s.updated.isoformat(), "updated_age": self.updated_age,
            "stratum": [{"url": stratum_url(public_host, p), "port": p.port,
                         "difficulty": p.difficulty, "vardiff": p.vardiff, "tls": p.tls}
                        for p in s.ports],
            "daemon": {"synced": s.synced, "blocks": s.blocks, "headers": s.headers,
                       "peers": s.peers},
            "network_hashrate": s.network_hashrate,
            "network_difficulty": s.network_difficulty,
            "hashrate": s.hashrate if self.live else None,
            "miners": s.miners if self.live else None,
            "workers": s.workers if self.live else None,
            "scheme": s.scheme, "fee_percent": s.fee_percent,
            "min_payout": None if s.min_payout is None else format(s.min_payout, "f"),
            "last_block": None if s.last_block_height is None and s.last_block_time is None
            else {"height": s.last_block_height,
                  "time": None if s.last_block_time is None else s.last_block_time.isoformat(),
                  "age": self.last_block_age, "status": s.last_block_status},
            "blocks_24h": s.found_24h,
            "last_payment": None if s.last_payment_time is None
            else {"time": s.last_payment_time.isoformat(), "age": self.last_payment_age,
                  "status": s.last_payment_status},
            "services": None if s.services is None or not self.live
            else {h.name: {"state": h.state, "reason": h.reason,
                           "since": None if h.since is None else h.since.isoformat()}
                  for h in s.services},
        }


def pool_view(prefix: str, status: PoolStatus | StatusError | None, now: datetime) -> PoolView:
    """Given a pool's prefix, its status (None when it has written none, the error when
    its file is broken) and the time now, return what to show.

    >>> at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    >>> pool_view("ltc", PoolStatus(updated=at, stratum_open=True), at).state
    'online'
    >>> pool_view("ltc", None, at).state, pool_view("ltc", None, at).reason
    ('offline', 'no status yet')
    """
    if status is None:
        return PoolView(prefix, "offline", "no status yet")
    if isinstance(status, StatusError):
        return PoolView(prefix, "unreadable", str(status))
    ages = {"updated_age": _age(now, status.updated),
            "last_block_age": _age(now, status.last_block_time),
            "last_payment_age": _age(now, status.last_payment_time)}
    if (now - status.updated).total_seconds() > STALE_AFTER:
        return PoolView(prefix, "offline", "status is stale", status, **ages)
    if not status.stratum_open:
        return PoolView(prefix, "closed", status.daemon_reason, status, **ages)
    if status.degraded:
        return PoolView(prefix, "degraded", degraded_reason(status.degraded), status, **ages)
    return PoolView(prefix, "online", None, status, **ages)


def degraded_reason(services: tuple[ServiceHealth, ...]) -> str:
    """One line naming each degraded service and its reason.

    >>> degraded_reason((ServiceHealth("payments", "degraded", "daemon unreachable"),
    ...                  ServiceHealth("stats", "degraded")))
    'payments degraded: daemon unreachable; stats degraded'
    """
    return "; ".join(f"{s.name} degraded" + (f": {s.reason}" if s.reason else "")
                     for s in services)


def read_status_bytes(path: Path) -> bytes:
    """Given the path of a status file, return its bytes; refuse a symlink, anything but
    a regular file (a FIFO would block) and anything over MAX_STATUS_BYTES.
    FileNotFoundError means there is no status yet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise StatusError(f"cannot open: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise StatusError("not a regular file")
        try:
            data = file.read(MAX_STATUS_BYTES + 1)
        except OSError as exc:
            raise StatusError(f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_STATUS_BYTES:
        raise StatusError(f"larger than {MAX_STATUS_BYTES} bytes")
    return data


class StatusReader:
    """Reads every pool's status from ``<root>/web/<prefix>/status.json``.

    The pools are the prefixes with a directory under ``web/`` (written by the engines)
    or under ``coin/`` (added but maybe never started: shown offline). Only names that
    match PREFIX_RE are taken, so no path is ever built from anything else.
    """

    def __init__(self, root: Path, *, clock: Callable[[], datetime] | None = None,
                 logger: logging.Logger | None = None):
        self.root = root
        self.web_dir = root / "web"
        self.clock = clock or (lambda: datetime.now(UTC))
        self.logger = logger or logging.getLogger("multipool.web")
        self._warned: dict[str, float] = {}  # prefix -> monotonic time of the last warning
        self._lock = threading.Lock()

    def prefixes(self) -> list[str]:
        """The pools of the server, sorted."""
        found: set[str] = set()
        for parent in (self.web_dir, self.root / "coin"):
            try:
                with os.scandir(parent) as entries:
                    found.update(e.name for e in entries if PREFIX_RE.fullmatch(e.name))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                self._warn(f"<{parent.name}>", f"cannot list {parent}: {exc.strerror}")
        return sorted(found)

    def read(self, prefix: str) -> PoolStatus | StatusError | None:
        """The status of one pool: None when it has none, the error when it is broken."""
        if not PREFIX_RE.fullmatch(prefix):
            raise ValueError(f"not a pool prefix: {prefix!r}")
        directory = self.web_dir / prefix
        status: PoolStatus | StatusError
        try:
            if directory.is_symlink():
                raise StatusError(f"web/{prefix} is a symlink")
            status = parse_status(read_status_bytes(directory / STATUS_FILE), prefix)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            status = StatusError(f"web/{prefix} is not a directory")
        except StatusError as exc:
            status = exc
        if isinstance(status, StatusError):
            self._warn(prefix, f"{directory / STATUS_FILE}: status unreadable: {status}")
        else:
            self._recovered(prefix)
        return status

    def views(self) -> list[PoolView]:
        """Every pool as the page and the API show it, sorted by prefix."""
        now = self.clock()
        return [pool_view(prefix, self.read(prefix), now) for prefix in self.prefixes()]

    def _warn(self, key: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._warned.get(key)
            if last is not None and now - last < WARN_INTERVAL:
                return
            self._warned[key] = now
        self.logger.warning("%s", message)

    def _recovered(self, key: str) -> None:
        with self._lock:
            if self._warned.pop(key, None) is None:
                return
        self.logger.info("web/%s/%s: readable again", key, STATUS_FILE)
