"""The web process as a service of the server, and the nginx or Apache site in front of
it (``[web] server``)."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from multipool.config import ServerConfig
from multipool.ops import apache, nginx, systemd
from multipool.ops.changes import Change
from multipool.ops.layout import Layout
from multipool.ops.services import ServiceSpec, fingerprinted

WEB_SERVICE = "multipool-web"
NGINX_DIR = Path("/etc/nginx")
APACHE_DIR = apache.APACHE_DIR
# Browsing must not slow mining: on a busy host the web process gets a fifth of the CPU
# share of a pool engine (systemd's default weight is 100) and yields to it at nice 10.
WEB_NICE = 10
WEB_CPU_WEIGHT = 20
# The Debian package of each web server `init` can write a site for.
SERVER_PACKAGES = {"nginx": "nginx", "apache": "apache2"}


def _loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _database_on_loopback(database: str) -> bool:
    """Whether the pools' databases are on this host: SQLite files, or a server whose
    admin URL names a loopback address (or a Unix socket: no host)."""
    if database == "sqlite":
        return True
    host = urlsplit(database).hostname
    return host is None or _loopback(f"{host}:0")


def web_service(layout: Layout, server: ServerConfig) -> ServiceSpec:
    """`multipool web serve` as the web user, reading only web/; given its settings on
    the command line, since multipool.toml (0600) may hold a database admin URL."""
    argv = [sys.executable, "-m", "multipool.cli", "web", "serve", "--root",
            str(layout.root), "--listen", server.web_listen, "--public-host",
            server.public_host, "--routing", server.web_routing,
            "--metrics-listen", server.web_metrics_listen,
            "--rate-limit", format(server.web_rate_limit, "g"),
            "--offline-after", str(server.web_offline_after),
            "--workers", str(server.web_workers), "--log-level", "info"]
    for proxy in server.web_trusted_proxies:
        argv += ["--trusted-proxy", proxy]
    for origin in server.web_cors_origins:
        argv += ["--cors-origin", origin]
    if not layout.system and os.geteuid() == 0:
        argv.append("--allow-root")  # a local install run by root (a container, CI)
    return fingerprinted(ServiceSpec(
        name=WEB_SERVICE, description="multipool web: the page listing every pool",
        argv=tuple(argv), working_dir=layout.web, user=layout.web_user,
        group=layout.web_user, stop_timeout=15.0, nice=WEB_NICE,
        cpu_weight=WEB_CPU_WEIGHT,
        # Behind the proxy on loopback, reading databases on this host: no other address
        # may reach it or be reached. A database server elsewhere must be reachable.
        network=not (_loopback(server.web_listen)
                     and _database_on_loopback(server.database))))


def site_changes(server: ServerConfig, *, nginx_dir: Path = NGINX_DIR,
                 apache_dir: Path = APACHE_DIR) -> list[Change]:
    """The site of ``[web] server`` in front of the web process, and the other server's
    site disabled (a switch from nginx to Apache or back). The servers' own config tests
    run only on the system's directories: a test's directories are not in their config."""
    nginx_check = None if nginx_dir == NGINX_DIR else False
    apache_server = apache.Apache(directory=apache_dir)
    apache_check = None if apache_dir == APACHE_DIR else False
    if server.web_server == "apache":
        return [*nginx.disable_changes(nginx_dir=nginx_dir, check=nginx_check),
                *apache.site_changes(server_name=server.public_host,
                                     upstream=server.web_listen, routing=server.web_routing,
                                     apache=apache_server, check=apache_check)]
    return [*apache.disable_changes(apache=apache_server, check=apache_check),
            *nginx.site_changes(server_name=server.public_host, upstream=server.web_listen,
                                routing=server.web_routing, nginx_dir=nginx_dir,
                                check=nginx_check)]


def pending_site_change(server: ServerConfig, *, nginx_dir: Path = NGINX_DIR,
                        apache_dir: Path = APACHE_DIR) -> Change:
    """The site as one change, for a plan that installs the web server's package first:
    its directories do not exist yet, so what to write is worked out when the change is
    applied. The values are checked now, so a bad one still stops the plan before it
    starts."""
    renderer = apache.render if server.web_server == "apache" else nginx.render
    renderer(server_name=server.public_host, upstream=server.web_listen,
             routing=server.web_routing)
    package = SERVER_PACKAGES[server.web_server]

    def apply() -> None:
        for change in site_changes(server, nginx_dir=nginx_dir, apache_dir=apache_dir):
            change.apply()
    return Change("web.site", server.public_host,
                  f"install the {server.web_server} site once {package} is installed", apply)


def web_changes(layout: Layout, server: ServerConfig, *, unit_dir: Path = systemd.UNIT_DIR,
                nginx_dir: Path = NGINX_DIR, apache_dir: Path = APACHE_DIR,
                server_installed: bool = True) -> list[Change]:
    """System mode: the web unit (enabled, and started where systemd runs) and the
    site of ``[web] server`` proxying ``public_host`` to it (``server_installed``
    False: the plan installs the web server first, see :func:`pending_site_change`)."""
    if not layout.system:
        return []
    unit = systemd.render_service(web_service(layout, server))
    plan = systemd.install_units({f"{WEB_SERVICE}.service": unit}, unit_dir)
    if unit_dir == systemd.UNIT_DIR:  # systemctl knows no other directory
        plan += systemd.service_state_changes(WEB_SERVICE, running=systemd.systemd_running(),
                                              enabled=True)
    if not server_installed:
        return [*plan, pending_site_change(server, nginx_dir=nginx_dir, apache_dir=apache_dir)]
    return plan + site_changes(server, nginx_dir=nginx_dir, apache_dir=apache_dir)
