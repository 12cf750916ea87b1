"""What the web process is told on its command line (multipool.toml is 0600 and may hold
a database admin URL, so the web user never reads it)."""

from __future__ import annotations

from dataclasses import dataclass

# Where a reverse proxy on this host connects from.
LOOPBACK_PROXIES = ("127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The web app's settings, from ``[server]`` and ``[web]`` of multipool.toml."""

    public_host: str = "localhost"
    routing: str = "path"  # path | subdomain
    # Prometheus /metrics on its own listener, never through the proxy ("": none).
    metrics_listen: str = "127.0.0.1:9108"
    # Peers whose X-Forwarded-For is believed: addresses or networks.
    trusted_proxies: tuple[str, ...] = LOOPBACK_PROXIES
    # Origins allowed to read /api/v1 from a browser ("*": any).
    cors_origins: tuple[str, ...] = ()
    # Requests per second per client IP on /api/v1; bursts of ten times as many.
    rate_limit: float = 10.0
    # Minutes without a share after which a worker is shown offline.
    offline_after: int = 10
