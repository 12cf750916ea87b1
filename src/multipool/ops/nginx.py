"""The nginx site in front of the one web process for all pools.

:func:`render` turns the server config's ``[server] public_host``, ``[web] listen`` and
``routing`` into files (see :mod:`multipool.ops.sites` for why apart): the include file
``snippets/multipool.conf``, multipool's, with the reverse proxy to the web process
(Host, X-Forwarded-For/-Proto set for it), security headers (each where the app sent
none: ``conf.d/multipool.conf`` maps them in the http block), gzip, a week of caching for
``/static/``, ``/metrics`` denied, no uploads and no version in the ``Server`` header; and
the site file ``sites-available/multipool``, the operator's, with the listeners and a
marked block naming the host (``*.<public_host>`` too with subdomain routing) and
including the first. Every value is validated before it reaches the text, so a value
can never add a directive (``;``, ``{``, ``}``, quotes and whitespace are refused).

:func:`site_changes` installs them the Debian way (the site linked in ``sites-enabled/``)
as idempotent :class:`~multipool.ops.changes.Change` objects, and when anything changed
ends with one ``nginx.reload`` change: ``nginx -t``, then ``nginx -s reload`` when nginx
runs. A site nginx rejects is rolled back (each file as it was, or removed when it was
not there) and nginx is not reloaded.

TLS is the operator's: ``certbot --nginx`` adds the 443 listener, the certificate and a
redirect to the site file, outside the marked block, and later runs keep them. multipool
generates no certificates.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from multipool.errors import ConfigError, PoolError
from multipool.ops import changes, sites
from multipool.ops.changes import Change
from multipool.ops.commands import run_command

logger = logging.getLogger("multipool.ops.nginx")

NGINX_DIR = Path("/etc/nginx")
NGINX: tuple[str, ...] = ("nginx",)
PID_FILE = Path("/run/nginx.pid")
SITE_NAME = "multipool"
INCLUDE_NAME = "multipool.conf"  # in snippets/, Debian's place for server-block includes
ROUTINGS = ("path", "subdomain")
STATIC_EXPIRES = "7d"
PROXY_READ_TIMEOUT = "60s"
PROXY_CONNECT_TIMEOUT = "5s"
# The web app takes no uploads: its forms (if any) are a few fields.
CLIENT_MAX_BODY_SIZE = "16k"
CONTENT_SECURITY_POLICY = ("default-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
                           "form-action 'self'")
# The security headers of the site, each added only when the web app did not send its own:
# the app knows its pages (a stricter policy of its own must not be loosened, and two
# content security policies would both apply), the site covers what it leaves out and
# the server's own error pages.
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "same-origin"),
                    ("Content-Security-Policy", CONTENT_SECURITY_POLICY))
# In conf.d/, which Debian's nginx.conf includes in its http block: where a map must be.
HTTP_INCLUDE_NAME = "multipool.conf"
GZIP_TYPES = ("text/css", "text/plain", "text/javascript", "application/javascript",
              "application/json", "image/svg+xml")

# Characters that would end a directive, open or close a block or start a quoted string in
# nginx's syntax: refused with their own message, whatever the key.
_SYNTAX = re.compile(r"""[;{}'"`\\$#\s]""")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")
# The web process may listen on every address; nginx reaches it on the loopback one.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}  # noqa: S104


class NginxError(PoolError, RuntimeError):
    """nginx rejected its configuration, or could not reload it; the message has nginx's
    output."""


def _refuse_syntax(value: str, key: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"must be a non-empty string, got {value!r}", key=key)
    if _SYNTAX.search(value):
        raise ConfigError("must not contain ';', '{', '}', '$', '#', quotes, backslashes, "
                          f"whitespace or newlines, got {value!r}", key=key)


def _hostname(value: str) -> bool:
    return len(value) <= 253 and _HOSTNAME.fullmatch(value) is not None


def check_server_name(server_name: str, routing: str = "path") -> str:
    """Given ``[server] public_host`` and the routing, return it as nginx's server_name
    or raise :class:`ConfigError` naming ``server.public_host``."""
    key = "server.public_host"
    _refuse_syntax(server_name, key)
    if routing not in ROUTINGS:
        raise ConfigError(f"must be one of {', '.join(ROUTINGS)}, got {routing!r}",
                          key="web.routing")
    if server_name == "_":
        if routing == "subdomain":
            raise ConfigError("subdomain routing needs a host name, not '_'", key=key)
        return server_name
    if not _hostname(server_name):
        raise ConfigError("must be a host name (letters, digits, '-' and '.'), an IPv4 "
                          f"address, '_' or 'localhost', got {server_name!r}", key=key)
    if routing == "subdomain" and _IPV4.fullmatch(server_name):
        raise ConfigError(f"subdomain routing needs a host name, not the address "
                          f"{server_name!r}", key=key)
    return server_name


def check_upstream(upstream: str) -> str:
    """Given ``[web] listen`` (HOST:PORT), return the address nginx proxies to (an
    any-address becomes the loopback one) or raise :class:`ConfigError` naming
    ``web.listen``."""
    key = "web.listen"
    _refuse_syntax(upstream, key)
    host, _, port = upstream.rpartition(":")
    if not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"must be HOST:PORT with a numeric port, got {upstream!r}", key=key)
    if not (_hostname(host) or _IPV6.fullmatch(host)):
        raise ConfigError(f"must be HOST:PORT (a host name, an IPv4 address or an IPv6 "
                          f"address in brackets), got {upstream!r}", key=key)
    return f"{_ANY_ADDRESS.get(host, host)}:{int(port)}"


def _check_port(listen_port: int) -> int:
    if isinstance(listen_port, bool) or not isinstance(listen_port, int) \
            or not 0 < listen_port < 65536:
        raise ConfigError(f"must be a TCP port (1-65535), got {listen_port!r}",
                          key="nginx listen port")
    return listen_port


@dataclass(frozen=True)
class SiteText:
    """The nginx site as files: ``include`` (multipool's, rewritten on every run, in the
    server block), ``http_include`` (multipool's too, in the http block: the header
    maps), the site file as first written (``site``) and the lines of its marked block
    (``block``), which later runs keep current in the operator's file."""

    include: str
    http_include: str
    site: str
    block: list[str]


def header_variable(name: str) -> str:
    """The variable that holds the site's value for a header (empty when the app sent
    one): ``X-Frame-Options`` -> ``$multipool_x_frame_options``."""
    return "$multipool_" + name.lower().replace("-", "_")


def render_http_include() -> str:
    """The http-level part of the site: for each security header, its value when the
    upstream response has none, else empty (and nginx's add_header skips an empty
    value)."""
    lines = [
        "# Generated by multipool: `multipool init` rewrites this file, so edits here are",
        "# lost. The security headers the multipool site adds when the web app did not",
        "# send its own (the app's, made for its pages, win).",
        "",
    ]
    for name, value in SECURITY_HEADERS:
        upstream = "$upstream_http_" + name.lower().replace("-", "_")
        lines += [f"map {upstream} {header_variable(name)} {{",
                  f'    "" "{value}";',
                  '    default "";',
                  "}"]
    return "\n".join(lines) + "\n"


def render_include(*, upstream: str) -> str:
    """Given ``[web] listen``, return the directives of the server block that proxies to
    the web process (the include file), or raise :class:`ConfigError`."""
    proxy = f"http://{check_upstream(upstream)}"
    lines = [
        "# Generated by multipool from multipool.toml ([web] listen): `multipool init`",
        "# rewrites this file, so edits here are lost. The server block that includes it",
        "# (sites-available/multipool) is yours and certbot's to edit.",
        "",
        "server_tokens off;",
        "# The web app takes no uploads.",
        f"client_max_body_size {CLIENT_MAX_BODY_SIZE};",
        "",
        "# Each only when the web app sent none (conf.d/multipool.conf maps them).",
        "# `always`: on error pages too. A location that has an add_header of its own",
        "# would drop these (nginx inherits add_header only when a level has none), so",
        "# none below has one: /static/ caches with `expires`.",
        *(f"add_header {name} {header_variable(name)} always;"
          for name, _ in SECURITY_HEADERS),
        "",
        "gzip on;",
        "gzip_vary on;",
        "gzip_proxied any;",
        "gzip_min_length 256;",
        f"gzip_types {' '.join(GZIP_TYPES)};",
        "",
        "# At server level, so every location below inherits them. Host as the browser",
        "# sent it: with subdomain routing the web app picks the pool by it.",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "# Set, not appended to: the web app believes this header from nginx, so a client",
        "# must not be able to put an address of its choice into it. Behind a CDN, let",
        "# nginx's realip module (set_real_ip_from) make $remote_addr the client's.",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        f"proxy_connect_timeout {PROXY_CONNECT_TIMEOUT};",
        f"proxy_read_timeout {PROXY_READ_TIMEOUT};",
        "",
        "location / {",
        f"    proxy_pass {proxy};",
        "}",
        "",
        "location /static/ {",
        f"    proxy_pass {proxy};",
        f"    expires {STATIC_EXPIRES};",
        "}",
        "",
        "# Prometheus metrics have a listener of their own ([web] metrics_listen), never",
        "# reachable through the public site.",
        "location = /metrics {",
        "    deny all;",
        "}",
        "location ^~ /metrics/ {",
        "    deny all;",
        "}",
        "",
    ]
    return "\n".join(lines)


def render_block(*, server_name: str, routing: str = "path",
                 include: Path = NGINX_DIR / "snippets" / INCLUDE_NAME) -> list[str]:
    """The lines between the markers of the site file: the names it answers and the
    include line."""
    name = check_server_name(server_name, routing)
    names = f"{name} *.{name}" if routing == "subdomain" else name
    _refuse_syntax(str(include), "nginx include path")
    return [f"server_name {names};", f"include {include};"]


def render(*, server_name: str, upstream: str, listen_port: int = 80,
           routing: str = "path",
           include: Path = NGINX_DIR / "snippets" / INCLUDE_NAME) -> SiteText:
    """Given ``[server] public_host``, ``[web] listen`` and ``routing``, return the nginx
    site's files, or raise :class:`ConfigError`."""
    block = render_block(server_name=server_name, routing=routing, include=include)
    port = _check_port(listen_port)
    include_text = render_include(upstream=upstream)
    lines = [
        "# The nginx site of multipool, written once by `multipool init` and then yours:",
        "# `multipool init` rewrites only the lines between the BEGIN and END markers",
        "# (from multipool.toml: [server] public_host, [web] routing) and the file they",
        f"# include, {include}, which holds every proxy, header, gzip and",
        "# cache directive. Keep the markers.",
        "#",
        "# TLS: `certbot --nginx -d <public_host>` adds the 443 listener, the certificate",
        "# and a redirect to this file, and they stay when `multipool init` runs again.",
        "# With subdomain routing, name each pool's host too (-d ltc.<public_host>) or",
        "# take a wildcard certificate (a DNS challenge). multipool generates none.",
        "",
        "server {",
        f"    listen {port};",
        f"    listen [::]:{port};",
        "",
        f"    {sites.BEGIN}",
        *(f"    {line}" for line in block),
        f"    {sites.END}",
        "}",
        "",
    ]
    return SiteText(include=include_text, http_include=render_http_include(),
                    site="\n".join(lines), block=block)


def nginx_running(pid_file: Path = PID_FILE) -> bool:
    """True when ``pid_file`` names a live nginx process."""
    return sites.server_running(pid_file, "nginx")


def check_and_reload(*, snapshot: sites.Snapshot, nginx: Sequence[str] = NGINX,
                     pid_file: Path = PID_FILE) -> str:
    """Run ``nginx -t``; when it fails, put the files back as ``snapshot`` has them
    (the previous site, or none) and raise :class:`NginxError` with nginx's output,
    without reloading. Then ``nginx -s reload`` when nginx runs. Return ``"reloaded"``
    or ``"tested"`` (nginx is not running)."""
    return sites.check_and_reload(
        name="nginx", snapshot=snapshot,
        test=lambda: run_command([*nginx, "-t"], timeout=60),
        running=lambda: nginx_running(pid_file),
        reload=lambda: run_command([*nginx, "-s", "reload"], timeout=60),
        error=NginxError, logger=logger)


def _dirs(nginx_dir: Path, upstream: str) -> tuple[Path, Path]:
    available, enabled = nginx_dir / "sites-available", nginx_dir / "sites-enabled"
    for directory in (available, enabled):
        if not directory.is_dir():
            raise ConfigError(
                f"{directory} does not exist: install nginx (apt-get install nginx) or "
                f"configure your own web server to proxy to {check_upstream(upstream)}")
    return available, enabled


def site_changes(*, server_name: str, upstream: str, listen_port: int = 80,
                 routing: str = "path", nginx_dir: Path = NGINX_DIR,
                 check: bool | None = None, nginx: Sequence[str] = NGINX,
                 pid_file: Path = PID_FILE, owner: str | None = "root",
                 group: str | None = "root") -> list[Change]:
    """The changes that install the site in ``nginx_dir``: ``conf.d/multipool.conf`` and
    ``snippets/multipool.conf`` (multipool's include files, in the http and the server
    block), ``sites-available/multipool`` (written when absent, else
    only its marked block), both ``owner``:``group`` 0644, the link in
    ``sites-enabled/`` and, when any is needed, one ``nginx.reload`` change (see
    :func:`check_and_reload`). ``check`` None: test and reload when ``nginx`` is on
    PATH; False: never (the caller tests), True: always. ``nginx`` is the argv prefix of
    every nginx call (tests add ``-p``/``-c``); ``pid_file`` is where that nginx keeps
    its pid. Raises :class:`ConfigError` for a bad value, for a site file whose markers
    are gone, or when ``nginx_dir`` has no sites-available/sites-enabled (nginx is not
    installed)."""
    snippets, conf_d = nginx_dir / "snippets", nginx_dir / "conf.d"
    include, http_include = snippets / INCLUDE_NAME, conf_d / HTTP_INCLUDE_NAME
    text = render(server_name=server_name, upstream=upstream, listen_port=listen_port,
                  routing=routing, include=include)
    available, enabled = _dirs(nginx_dir, upstream)
    site, link = available / SITE_NAME, enabled / SITE_NAME
    snapshot = sites.Snapshot.take([http_include, include, site], [link])
    plan: list[Change] = []
    for directory in (conf_d, snippets):
        if not directory.is_dir():
            plan += changes.directory(directory, mode=0o755)
    plan += changes.file(http_include, text.http_include, owner=owner, group=group,
                         mode=0o644)
    plan += changes.file(include, text.include, owner=owner, group=group, mode=0o644)
    plan += sites.site_file_changes(site, text.site, text.block, owner=owner, group=group)
    plan += changes.symlink(link, site)
    if plan and (shutil.which(nginx[0]) is not None if check is None else check):
        plan.append(Change(
            "nginx.reload", str(site), "test the config (nginx -t), reload nginx if it runs",
            lambda: check_and_reload(snapshot=snapshot, nginx=nginx, pid_file=pid_file)))
    return plan


def disable_changes(*, nginx_dir: Path = NGINX_DIR, check: bool | None = None,
                    nginx: Sequence[str] = NGINX, pid_file: Path = PID_FILE) -> list[Change]:
    """The changes that take multipool's site out of nginx (another web server serves
    it now): its link in ``sites-enabled/`` removed, then nginx tested and reloaded if it
    runs. The files stay, unused, with the operator's edits. Nothing when not enabled."""
    site = nginx_dir / "sites-available" / SITE_NAME
    link = nginx_dir / "sites-enabled" / SITE_NAME
    if not (link.is_symlink() and os.readlink(link) == str(site)):
        return []
    snapshot = sites.Snapshot.take([], [link])
    plan = [Change("nginx.disable", str(link), "remove (the site is served by Apache now)",
                   link.unlink)]
    if shutil.which(nginx[0]) is not None if check is None else check:
        plan.append(Change(
            "nginx.reload", str(site), "test the config (nginx -t), reload nginx if it runs",
            lambda: check_and_reload(snapshot=snapshot, nginx=nginx, pid_file=pid_file)))
    return plan
