"""The nginx site in front of the one web process for all pools.

:func:`render_site` turns the server config's ``[server] public_host`` and ``[web] listen``
and ``routing`` into one nginx ``server`` block: a reverse proxy to the web process with
security headers, gzip, a week of caching for ``/static/``, no uploads and no version in
the ``Server`` header. Every value is validated before it reaches the text, so a value
can never add a directive (``;``, ``{``, ``}``, quotes and whitespace are refused).

:func:`site_changes` installs it the Debian way (``sites-available/multipool`` and its link
in ``sites-enabled/``) as idempotent :class:`~multipool.ops.changes.Change` objects, and
when anything changed ends with one ``nginx.reload`` change: ``nginx -t``, then ``nginx -s
reload`` when nginx runs. A site nginx rejects is disabled again (its link removed) so
nginx still starts after a reboot, and the next run finds the link to create and tests
again.

TLS is the operator's: ``certbot --nginx`` adds the 443 listener and certificate to the
site in place. The next ``multipool init`` that finds the file different rewrites it and
drops those lines, so run certbot again after it (it reuses the certificate it has).
multipool generates no certificates.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from multipool.errors import ConfigError, PoolError
from multipool.ops import changes
from multipool.ops.changes import Change
from multipool.ops.commands import CommandError, run_command

logger = logging.getLogger("multipool.ops.nginx")

NGINX_DIR = Path("/etc/nginx")
NGINX: tuple[str, ...] = ("nginx",)
PID_FILE = Path("/run/nginx.pid")
SITE_NAME = "multipool"
ROUTINGS = ("path", "subdomain")
STATIC_EXPIRES = "7d"
PROXY_READ_TIMEOUT = "60s"
PROXY_CONNECT_TIMEOUT = "5s"
# The web app takes no uploads: its forms (if any) are a few fields.
CLIENT_MAX_BODY_SIZE = "16k"
CONTENT_SECURITY_POLICY = ("default-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
                           "form-action 'self'")
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


def render_site(*, server_name: str, upstream: str, listen_port: int = 80,
                routing: str = "path") -> str:
    """Given ``[server] public_host``, ``[web] listen`` and ``routing``, return the text of
    the nginx site that proxies to the web process, or raise :class:`ConfigError`."""
    name = check_server_name(server_name, routing)
    target = check_upstream(upstream)
    port = _check_port(listen_port)
    names = f"{name} *.{name}" if routing == "subdomain" else name
    proxy = f"http://{target}"
    lines = [
        "# Generated by multipool: `multipool init` rewrites this file, so edits here are",
        "# lost. Edit multipool.toml instead ([server] public_host, [web] listen and",
        "# routing) and run `multipool init` again.",
        "#",
        f"# nginx in front of the multipool web process at {target}.",
        "#",
        "# Routing: the web app serves one index for all pools, so `path` and `subdomain`",
        "# routing proxy the same way; `subdomain` only adds *.<public_host> to server_name",
        "# so that <prefix>.<public_host> reaches the same app.",
        "#",
        "# TLS is left to the operator: e.g. `certbot --nginx -d <public_host>` adds the",
        "# 443 listener and the certificate to this file; `multipool init` drops them",
        "# when it rewrites the file, so run certbot again after it. multipool generates",
        "# no certificates.",
        "",
        "server {",
        f"    listen {port};",
        f"    listen [::]:{port};",
        f"    server_name {names};",
        "",
        "    server_tokens off;",
        "    # The web app takes no uploads.",
        f"    client_max_body_size {CLIENT_MAX_BODY_SIZE};",
        "",
        "    # `always`: on error pages too. A location that has an add_header of its own",
        "    # would drop these (nginx inherits add_header only when a level has none), so",
        "    # none below has one: /static/ caches with `expires`.",
        "    add_header X-Content-Type-Options nosniff always;",
        "    add_header X-Frame-Options DENY always;",
        "    add_header Referrer-Policy same-origin always;",
        f'    add_header Content-Security-Policy "{CONTENT_SECURITY_POLICY}" always;',
        "",
        "    gzip on;",
        "    gzip_vary on;",
        "    gzip_proxied any;",
        "    gzip_min_length 256;",
        f"    gzip_types {' '.join(GZIP_TYPES)};",
        "",
        "    # At server level, so both locations below inherit them.",
        "    proxy_http_version 1.1;",
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        f"    proxy_connect_timeout {PROXY_CONNECT_TIMEOUT};",
        f"    proxy_read_timeout {PROXY_READ_TIMEOUT};",
        "",
        "    location / {",
        f"        proxy_pass {proxy};",
        "    }",
        "",
        "    location /static/ {",
        f"        proxy_pass {proxy};",
        f"        expires {STATIC_EXPIRES};",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


def nginx_running(pid_file: Path = PID_FILE) -> bool:
    """True when ``pid_file`` names a live nginx process."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it lives, as another user
    try:
        # A stale pid file may name a pid the kernel gave to another program since.
        return "nginx" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return True


def _disable(link: Path, site: Path) -> bool:
    if link.is_symlink() and os.readlink(link) == str(site):
        link.unlink()
        return True
    return False


def check_and_reload(*, site: Path, link: Path, nginx: Sequence[str] = NGINX,
                    pid_file: Path = PID_FILE) -> str:
    """Run ``nginx -t``; when it fails, disable the site (remove ``link`` if it points to
    ``site``) and raise :class:`NginxError` with nginx's output. Then ``nginx -s reload``
    when nginx runs. Return ``"reloaded"`` or ``"tested"`` (nginx is not running)."""
    try:
        run_command([*nginx, "-t"], timeout=60)
    except CommandError as exc:
        disabled = _disable(link, site)
        raise NginxError(
            f"nginx rejects its configuration with {site}"
            + (f"; the site is disabled again ({link} removed) so nginx still starts"
               if disabled else "")
            + f". nginx said:\n{exc.output.strip()}") from exc
    if not nginx_running(pid_file):
        logger.info("nginx config is valid; nginx is not running, nothing to reload")
        return "tested"
    try:
        run_command([*nginx, "-s", "reload"], timeout=60)
    except CommandError as exc:
        raise NginxError(f"nginx could not reload. nginx said:\n{exc.output.strip()}") from exc
    return "reloaded"


def site_changes(*, server_name: str, upstream: str, listen_port: int = 80,
                 routing: str = "path", nginx_dir: Path = NGINX_DIR,
                 check: bool | None = None, nginx: Sequence[str] = NGINX,
                 pid_file: Path = PID_FILE, owner: str | None = "root",
                 group: str | None = "root") -> list[Change]:
    """The changes that install the site in ``nginx_dir`` (``sites-available/multipool``,
    ``owner``:``group`` 0644, and its link in ``sites-enabled/``) and, when any is needed, one
    ``nginx.reload`` change (see :func:`check_and_reload`). ``check`` None: test and reload
    when ``nginx`` is on PATH; False: never (the caller tests), True: always. ``nginx`` is
    the argv prefix of every nginx call (tests add ``-p``/``-c``); ``pid_file`` is where
    that nginx keeps its pid. Raises :class:`ConfigError` for a bad value or when
    ``nginx_dir`` has no sites-available/sites-enabled (nginx is not installed)."""
    text = render_site(server_name=server_name, upstream=upstream, listen_port=listen_port,
                       routing=routing)
    available, enabled = nginx_dir / "sites-available", nginx_dir / "sites-enabled"
    for directory in (available, enabled):
        if not directory.is_dir():
            raise ConfigError(
                f"{directory} does not exist: install nginx (apt-get install nginx) or "
                f"configure your own web server to proxy to {check_upstream(upstream)}")
    site, link = available / SITE_NAME, enabled / SITE_NAME
    plan = changes.file(site, text, owner=owner, group=group, mode=0o644)
    plan += changes.symlink(link, site)
    if plan and (shutil.which(nginx[0]) is not None if check is None else check):
        plan.append(Change(
            "nginx.reload", str(site), "test the config (nginx -t), reload nginx if it runs",
            lambda: check_and_reload(site=site, link=link, nginx=nginx, pid_file=pid_file)))
    return plan
