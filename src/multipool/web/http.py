"""HTTP concerns of the API that are not the API itself: who the client is (forwarded
addresses believed only from trusted proxies), how often it may ask (a token bucket per
client address), and which browser origins may read the answers (CORS).

:class:`ApiGuard` is the ASGI middleware that applies the three to ``/api/v1/...``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A client may send bursts of this many times the per-second rate.
BURST_FACTOR = 10
# Buckets kept at most: past this, the full (idle) ones are dropped, so a flood of
# addresses cannot grow memory without bound.
MAX_BUCKETS = 100_000
# An X-Forwarded-For longer than this is not walked (a proxy chain is a few hops).
MAX_FORWARDED_HOPS = 20
# The path prefix the guard applies to.
API_PREFIX = "/api/v1/"
# A preflight answer may be cached by the browser this long (seconds).
CORS_MAX_AGE = 600


def parse_networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Given addresses or networks as text, return them as networks.

    >>> parse_networks(["127.0.0.1", "10.0.0.0/8"])
    (IPv4Network('127.0.0.1/32'), IPv4Network('10.0.0.0/8'))
    """
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket is the IPv4 client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(peer: str | None, forwarded_for: list[str],
                   trusted: tuple[IPNetwork, ...]) -> str:
    """Given the TCP peer's address, the X-Forwarded-For header values (in order) and the
    trusted proxies, return the client's address.

    The header is believed only as far as the hops are trusted: walking it from the
    right (the hop nearest us), the first address that is not a trusted proxy is the
    client. A peer that is not trusted is the client, whatever its header says. A
    malformed entry stops the walk at the last trusted hop.

    >>> lo = parse_networks(["127.0.0.1"])
    >>> client_address("127.0.0.1", ["203.0.113.9, 127.0.0.1"], lo)
    '203.0.113.9'
    >>> client_address("198.51.100.7", ["203.0.113.9"], lo)
    '198.51.100.7'
    """
    current = _address(peer) if peer else None
    if current is None:
        return peer or "unknown"
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    if len(hops) > MAX_FORWARDED_HOPS:
        hops = hops[-MAX_FORWARDED_HOPS:]
    for hop in reversed(hops):
        if not any(current in network for network in trusted):
            break
        previous = _address(hop)
        if previous is None:
            break
        current = previous
    return str(current)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, *, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 max_buckets: int = MAX_BUCKETS):
        if not rate > 0:
            raise ValueError(f"rate must be greater than 0, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else rate * BURST_FACTOR
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0 when allowed, else the seconds until
        a token is there again."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget the buckets that have refilled (their clients are idle); if none has,
        forget the oldest half."""
        full = [key for key, b in self._buckets.items()
                if b.tokens + (now - b.stamp) * self.rate >= self.burst]
        if not full:
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k].stamp)
            full = by_age[:max(1, len(by_age) // 2)]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def json_error(status: int, message: str) -> bytes:
    """The body of every API error: ``{"error": {"status": N, "message": "..."}}``."""
    return json.dumps({"error": {"status": status, "message": message}}).encode()


class ApiGuard:
    """ASGI middleware for ``/api/v1/...``: rate limit per client address (429 with
    Retry-After) and CORS headers for the allowed origins (preflight answered here).

    It also stores the client's address in ``scope["state"]["client_ip"]`` for every
    HTTP request, so the rest of the app never reads X-Forwarded-For itself."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: Iterable[str],
                 cors_origins: Iterable[str], limiter: RateLimiter):
        self.app = app
        self.trusted = parse_networks(trusted_proxies)
        origins = tuple(cors_origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/") for o in origins if o != "*")
        self.limiter = limiter

    def allowed_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for a request from ``origin``, or None."""
        if origin is None:
            return None
        if self.any_origin:
            return "*"
        return origin if origin in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope.get("client")
        ip = client_address(client[0] if client else None,
                            headers.getlist("x-forwarded-for"), self.trusted)
        scope.setdefault("state", {})["client_ip"] = ip
        path: str = scope["path"]
        if not (path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")):
            await self.app(scope, receive, send)
            return
        allow = self.allowed_origin(headers.get("origin"))
        cors: list[tuple[bytes, bytes]] = []
        if allow is not None:
            cors.append((b"access-control-allow-origin", allow.encode("latin-1")))
        if not self.any_origin and self.origins:
            cors.append((b"vary", b"Origin"))
        if scope["method"] == "OPTIONS" and headers.get("access-control-request-method"):
            await self._preflight(send, cors, allow is not None)
            return
        wait = self.limiter.take(ip)
        if wait > 0:
            await _send_json(send, 429, json_error(
                429, f"too many requests: at most {self.limiter.rate:g} per second "
                     f"(bursts of {self.limiter.burst:g}); retry in {math.ceil(wait)} s"),
                [*cors, (b"retry-after", str(math.ceil(wait)).encode())])
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and cors:
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, cors: list[tuple[bytes, bytes]],
                         allowed: bool) -> None:
        extra = [(b"access-control-allow-methods", b"GET, OPTIONS"),
                 (b"access-control-max-age", str(CORS_MAX_AGE).encode())] if allowed else []
        await send({"type": "http.response.start", "status": 204,
                    "headers": [*cors, *extra, (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b""})


async def _send_json(send: Send, status: int, body: bytes,
                     headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"), *headers]})
    await send({"type": "http.response.body", "body": body})
