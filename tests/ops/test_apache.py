"""The generated Apache site with Debian's apache2, in a throwaway copy of /etc/apache2
(own ServerRoot, envvars, ports, pid file, logs and a2enmod state under tmp_path, never
the system's): a2enmod/a2ensite/apache2ctl configtest accept it, a real Apache proxies
through it to a real HTTP server (and a real `multipool web serve`) with the Host,
forwarded headers, security headers, caching and compression it promises and /metrics
denied; installing is idempotent and reloads a running Apache, a site Apache rejects is
rolled back without a reload, certbot's TLS virtual host and redirect survive a re-run,
and switching `[web] server` disables the other server's site."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from multipool.config import ServerConfig, parse_server_config
from multipool.devnet import free_port
from multipool.errors import ConfigError
from multipool.ops import apache as site
from multipool.ops import sites, web
from tests.ops.proxies import (
    API,
    CSS,
    INDEX,
    Upstream,
    assert_security_headers,
    certbot_apache_edit,
    check_forwarding,
    check_web_process_behind,
    fetch,
    fetch_when_up,
    self_signed,
    serve_upstream,
    wait_for_port,
    web_serve,
    which,
)
from tests.support.requirements import missing

SYSTEM_APACHE = Path("/etc/apache2")


@dataclass
class Throwaway:
    """A copy of Debian's /etc/apache2 whose every runtime path is under ``root``."""

    root: Path
    apache: site.Apache
    ports: list[int]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.apache.directory

    @property
    def error_log(self) -> Path:
        return self.root / "log" / "error.log"

    def start(self) -> None:
        binary = which("apache2")
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "-d", str(self.conf), "-DFOREGROUND"], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.ports[0], self.process, self.error_log, "apache2")
            deadline = time.monotonic() + 10
            while not self.apache.pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            pytest.fail("apache2 did not stop on SIGTERM")

    def reloads(self) -> int:
        """How often this Apache took a graceful restart (its error log)."""
        if not self.error_log.exists():
            return 0
        return self.error_log.read_text().count("SIGUSR1 received")

    def configtest(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["apache2ctl", "configtest"], env=self.env, text=True,
                              capture_output=True, timeout=60, check=False)


@pytest.fixture
def throwaway(tmp_path: Path) -> Iterator[Throwaway]:
    if which("apache2") is None or not SYSTEM_APACHE.is_dir():
        missing("apache2", "apt-get install apache2 (or run `make setup`)")
    root = tmp_path / "apache"
    conf = root / "conf"
    shutil.copytree(SYSTEM_APACHE, conf, symlinks=True)
    for sub in ("run", "lock", "log", "state"):
        (root / sub).mkdir(parents=True)
    ports = [free_port(), free_port()]
    values = {
        "APACHE_RUN_USER": "www-data" if os.geteuid() == 0 else os.environ.get("USER", ""),
        "APACHE_RUN_GROUP": "www-data" if os.geteuid() == 0 else os.environ.get("USER", ""),
        "APACHE_PID_FILE": str(root / "run" / "apache2.pid"),
        "APACHE_RUN_DIR": str(root / "run"),
        "APACHE_LOCK_DIR": str(root / "lock"),
        "APACHE_LOG_DIR": str(root / "log"),
        "LANG": "C",
    }
    # apache2ctl and a2enmod read envvars from APACHE_CONFDIR, as on a real host.
    (conf / "envvars").write_text("unset HOME\n" + "".join(
        f"export {key}={value}\n" for key, value in values.items()))
    # Only free loopback ports: Debian's ports.conf would take 80 (and 443 with mod_ssl).
    (conf / "ports.conf").write_text("".join(f"Listen 127.0.0.1:{port}\n" for port in ports))
    # A catch-all virtual host first on the site's port: a Host the site does not name
    # lands here (410), as on a host with Debian's default site.
    (conf / "sites-available" / "000-catchall.conf").write_text(
        f"<VirtualHost *:{ports[0]}>\n    ServerName catchall.invalid\n"
        "    Redirect gone /\n</VirtualHost>\n")
    (conf / "sites-enabled" / "000-catchall.conf").symlink_to(
        "../sites-available/000-catchall.conf")
    apache = site.Apache(directory=conf, pid_file=root / "run" / "apache2.pid",
                         state_dir=root / "state")
    env = {**os.environ, **values, "APACHE_CONFDIR": str(conf),
           "APACHE_STATE_DIRECTORY": str(root / "state")}
    server = Throwaway(root, apache, ports, env)
    try:
        yield server
    finally:
        server.stop()


def ops(plan: list[site.Change]) -> list[str]:
    return [change.operation for change in plan]


def install(server: Throwaway, upstream: str, *, routing: str = "path",
            check: bool = True, server_name: str = "pool.example") -> list[object]:
    plan = site.site_changes(server_name=server_name, upstream=upstream,
                             listen_port=server.ports[0], routing=routing,
                             apache=server.apache, check=check, owner=None, group=None)
    return [change.apply() for change in plan]


def kwargs_of(server: Throwaway, upstream: str, **more: Any) -> dict[str, Any]:
    return dict(server_name="pool.example", upstream=upstream, listen_port=server.ports[0],
                apache=server.apache, check=True, owner=None, group=None, **more)


# --- rendering -----------------------------------------------------------------------------


def lines_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_site_text_has_what_the_brief_promises() -> None:
    include = Path("/etc/apache2/multipool/site.conf")
    text = site.render(server_name="pool.example", upstream="0.0.0.0:8080",
                       include=include)
    for line in ["ProxyPreserveHost On", "ProxyAddHeaders Off",
                 'RequestHeader set X-Forwarded-For "expr=%{REMOTE_ADDR}"',
                 'RequestHeader set X-Forwarded-Proto "expr=%{REQUEST_SCHEME}"',
                 "ProxyPass /metrics !",
                 "ProxyPass / http://127.0.0.1:8080/ connectiontimeout=5 timeout=60",
                 "ProxyPassReverse / http://127.0.0.1:8080/", "Require all denied",
                 'Header always set X-Frame-Options "DENY" "expr=-z resp(\'X-Frame-Options\')"',
                 'ExpiresDefault "access plus 604800 seconds"', "<Location /static/>"]:
        assert line in lines_of(text.include), line
    assert "DEFLATE text/html text/css" in text.include
    assert text.block == ["ServerName pool.example", f"Include {include}"]
    site_lines = lines_of(text.site)
    assert site_lines[site_lines.index(sites.BEGIN) + 1:][:3] == [*text.block, sites.END]
    assert "<VirtualHost *:80>" in site_lines and "certbot --apache" in text.site
    wild = site.render(server_name="pool.example", upstream="127.0.0.1:8080",
                       routing="subdomain", include=include)
    assert wild.block == ["ServerName pool.example", "ServerAlias *.pool.example",
                          f"Include {include}"]
    assert site.render(server_name="_", upstream="127.0.0.1:1").block[0] == "ServerAlias *"


@pytest.mark.parametrize(("key", "kwargs"), [
    ("server.public_host", {"server_name": "pool.example\nProxyPass / http://evil/"}),
    ("server.public_host", {"server_name": "<VirtualHost"}),
    ("web.listen", {"upstream": "127.0.0.1:80 retry=0"}),
    ("web.routing", {"routing": "vhost"}),
])
def test_bad_values_are_refused_naming_the_key(key: str, kwargs: dict[str, str]) -> None:
    values = {"server_name": "pool.example", "upstream": "127.0.0.1:8080", **kwargs}
    with pytest.raises(ConfigError) as caught:
        site.render(**values)
    assert caught.value.key == key


# --- installing into a throwaway Apache ------------------------------------------------------


def test_install_enables_modules_and_site_then_nothing(throwaway: Throwaway) -> None:
    kwargs = kwargs_of(throwaway, "127.0.0.1:8080")
    conf = throwaway.conf
    plan = site.site_changes(**kwargs)
    assert ops(plan) == ["apache.modules", "files.directory", "files.file", "files.file",
                         "apache.site", "apache.reload"]
    wanted = {"proxy", "proxy_http", "headers", "deflate", "expires", "ssl", "rewrite"}
    already = {name for name in wanted if (conf / "mods-enabled" / f"{name}.load").exists()}
    assert set(plan[0].target.split()) == wanted - already
    assert [change.apply() for change in plan][-1] == "tested"  # not running
    for name in wanted:
        assert (conf / "mods-enabled" / f"{name}.load").exists(), name
    link = conf / "sites-enabled" / "multipool.conf"
    assert os.readlink(link) == "../sites-available/multipool.conf"  # a2ensite's link
    # a2enmod/a2ensite recorded what they enabled in the throwaway state directory.
    assert (throwaway.root / "state" / "site" / "enabled_by_admin" / "multipool").exists()
    text = site.render(server_name="pool.example", upstream="127.0.0.1:8080",
                       listen_port=throwaway.ports[0], include=conf / "multipool" / "site.conf")
    assert (conf / "multipool" / "site.conf").read_text() == text.include
    assert (conf / "sites-available" / "multipool.conf").read_text() == text.site
    assert throwaway.configtest().returncode == 0
    assert site.site_changes(**kwargs) == []
    # A changed upstream: the include only, tested again.
    moved = site.site_changes(**kwargs_of(throwaway, "127.0.0.1:9090"))
    assert [(c.operation, c.target) for c in moved] == [
        ("files.file", str(conf / "multipool" / "site.conf")),
        ("apache.reload", str(conf / "sites-available" / "multipool.conf"))]


def test_missing_apache_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="install Apache \\(apt-get install apache2\\)"):
        site.site_changes(server_name="pool.example", upstream="127.0.0.1:8080",
                          apache=site.Apache(directory=tmp_path), check=False)
    assert list(tmp_path.iterdir()) == []


def test_real_apache_proxies_with_headers_cache_compression(
        throwaway: Throwaway, upstream: Upstream) -> None:
    install(throwaway, upstream.address, routing="subdomain")
    port = throwaway.ports[0]
    throwaway.start()
    check_forwarding(port, upstream)

    status, headers, body = fetch(port, "/static/x.css")
    assert (status, body) == (200, CSS)
    assert headers["Cache-Control"] == "max-age=604800"
    assert "Expires" in headers
    assert "Cache-Control" not in fetch(port, "/")[1]  # pages are not cached

    for url, original in (("/", INDEX), ("/static/x.css", CSS), ("/api/pools", API)):
        status, headers, body = fetch(port, url, headers={"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip", url
        assert gzip.decompress(body) == original
        assert "Accept-Encoding" in headers["Vary"]

    before = len(upstream.seen)
    for path in ("/metrics", "/metrics/x", "/metrics?x=1"):
        status, headers, _ = fetch(port, path)
        assert status == 403, path
        assert_security_headers(headers)  # `always`: on Apache's own errors too
    assert len(upstream.seen) == before
    assert fetch(port, "/metricsx")[0] == 404 and upstream.paths()[-1] == "/metricsx"

    # (No request body limit: Apache 2.4's LimitRequestBody does not hold for proxied
    # requests, measured here; the app itself takes no uploads.)

    # Subdomain routing: a pool's host reaches the app with that Host; others do not.
    assert fetch(port, "/", host="ltc.pool.example")[:3:2] == (200, INDEX)
    assert upstream.seen[-1]["Host"] == "ltc.pool.example"
    assert fetch(port, "/", host="other.example")[0] == 410


def test_path_routing_answers_the_public_host_only(throwaway: Throwaway,
                                                   upstream: Upstream) -> None:
    install(throwaway, upstream.address, routing="path")
    throwaway.start()
    assert fetch(throwaway.ports[0], "/")[:3:2] == (200, INDEX)
    assert fetch(throwaway.ports[0], "/", host="ltc.pool.example")[0] == 410


@pytest.mark.parametrize("routing", ["path", "subdomain"])
def test_real_web_process_behind_a_real_apache(throwaway: Throwaway, tmp_path: Path,
                                               routing: str) -> None:
    with web_serve(tmp_path / "server", routing=routing) as process:
        install(throwaway, process.address, routing=routing)
        throwaway.start()
        check_web_process_behind(throwaway.ports[0], routing)


def test_reload_reaches_a_running_apache_and_a_rejected_site_is_rolled_back(
        throwaway: Throwaway, upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = throwaway.conf
    include = conf / "multipool" / "site.conf"
    available = conf / "sites-available" / "multipool.conf"
    link = conf / "sites-enabled" / "multipool.conf"
    port = throwaway.ports[0]
    throwaway.start()
    assert fetch(port, "/")[0] == 410  # the catch-all: no site yet
    assert throwaway.reloads() == 0

    # No site before: a rejected one leaves none behind.
    monkeypatch.setattr(site, "render_include", lambda **_: "BogusDirective on\n")
    plan = site.site_changes(**kwargs_of(throwaway, upstream.address))
    for change in plan[:-1]:
        change.apply()
    assert link.is_symlink()
    with pytest.raises(site.ApacheError) as caught:
        plan[-1].apply()
    message = str(caught.value)
    assert "BogusDirective" in message  # Apache's own words
    assert f"{include} removed" in message and f"{link} removed" in message
    assert "not reloaded" in message
    assert not include.exists() and not available.exists() and not link.is_symlink()
    assert throwaway.configtest().returncode == 0
    assert throwaway.reloads() == 0

    # A good site: modules enabled, Apache gracefully restarted, the site served.
    monkeypatch.undo()
    assert install(throwaway, upstream.address)[-1] == "reloaded"
    assert fetch_when_up(port, "/")[:3:2] == (200, INDEX)
    deadline = time.monotonic() + 10
    while throwaway.reloads() != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert throwaway.reloads() == 1
    assert fetch(port, "/")[1]["X-Frame-Options"] == "DENY"  # mod_headers loaded live

    # A broken change to it: the previous files stay, no reload, still served.
    good = {path: path.read_bytes() for path in (include, available)}
    monkeypatch.setattr(site, "render_include", lambda **_: "BogusDirective on\n")
    plan = site.site_changes(**kwargs_of(throwaway, upstream.address))
    assert ops(plan) == ["files.file", "apache.reload"]
    with pytest.raises(site.ApacheError, match=f"{include} restored"):
        for change in plan:
            change.apply()
    assert {path: path.read_bytes() for path in good} == good
    assert throwaway.configtest().returncode == 0
    time.sleep(0.3)
    assert throwaway.reloads() == 1
    assert fetch(port, "/")[:3:2] == (200, INDEX)


def test_certbots_tls_host_and_redirect_survive_init_again(
        throwaway: Throwaway, upstream: Upstream, tmp_path: Path) -> None:
    """The site edited as `certbot --apache --redirect` edits it (reproduced in
    tests/ops/proxies.py with a self-signed certificate: certbot itself needs a public
    name and Let's Encrypt): Apache serves TLS through the include, port 80 redirects,
    and installing again (a new upstream, then subdomain routing) keeps certbot's
    virtual host and redirect, with the marked block of both files kept current."""
    http_port, tls_port = throwaway.ports
    install(throwaway, upstream.address)
    conf = throwaway.conf
    available = conf / "sites-available" / "multipool.conf"
    cert, key = self_signed(tmp_path / "letsencrypt" / "live" / "pool.example")
    options = tmp_path / "letsencrypt" / "options-ssl-apache.conf"
    options.write_text("SSLEngine on\nSSLProtocol all -SSLv3 -TLSv1 -TLSv1.1\n")
    tls_site = certbot_apache_edit(available, server_name="pool.example", tls_port=tls_port,
                                   http_port=http_port, cert=cert, key=key, options=options)
    subprocess.run(["a2ensite", "-q", "multipool-le-ssl"], env=throwaway.env, check=True,
                   capture_output=True, timeout=60)
    redirect = [line for line in available.read_text().splitlines() if "Rewrite" in line]
    assert len(redirect) == 3
    tls_text = tls_site.read_text()
    assert throwaway.configtest().returncode == 0, throwaway.configtest().stdout
    throwaway.start()
    status, headers, body = fetch(tls_port, "/", tls=True)
    assert (status, body) == (200, INDEX)
    assert headers["X-Frame-Options"] == "DENY"
    assert upstream.seen[-1]["X-Forwarded-Proto"] == "https"
    assert fetch(tls_port, "/metrics", tls=True)[0] == 403
    status, headers, _ = fetch(http_port, "/static/x.css?v=1")
    assert status == 301
    assert headers["Location"] == "https://pool.example/static/x.css?v=1"

    with serve_upstream() as moved:
        plan = site.site_changes(**kwargs_of(throwaway, moved.address))
        assert ops(plan) == ["files.file", "apache.reload"]  # the include only
        assert [change.apply() for change in plan][-1] == "reloaded"
        assert [line for line in available.read_text().splitlines()
                if "Rewrite" in line] == redirect
        assert tls_site.read_text() == tls_text
        deadline = time.monotonic() + 15
        while not moved.seen and time.monotonic() < deadline:
            fetch(tls_port, "/", tls=True)
            time.sleep(0.05)
        assert moved.seen and moved.seen[-1]["X-Forwarded-Proto"] == "https"

        # Subdomain routing: the block of both files changes, nothing else.
        plan = site.site_changes(**kwargs_of(throwaway, moved.address, routing="subdomain"))
        assert [(c.operation, c.target) for c in plan] == [
            ("files.file", str(available)), ("files.file", str(tls_site)),
            ("apache.reload", str(available))]
        assert [change.apply() for change in plan][-1] == "reloaded"
        alias = "    ServerAlias *.pool.example"
        for path, before in ((tls_site, tls_text),):
            assert path.read_text() == before.replace(
                "    ServerName pool.example\n", f"    ServerName pool.example\n{alias}\n")
        assert [line for line in available.read_text().splitlines()
                if "Rewrite" in line] == redirect
        assert alias in available.read_text().splitlines()
        deadline = time.monotonic() + 15
        while True:
            status, _, body = fetch(tls_port, "/", host="ltc.pool.example", tls=True)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (status, body) == (200, INDEX)
        assert moved.seen[-1]["Host"] == "ltc.pool.example"


# --- [web] server: one site or the other ----------------------------------------------------


def server_config(root: Path, server: str) -> ServerConfig:
    data = tomllib.loads(f'[server]\nroot = "{root}"\npublic_host = "pool.example"\n'
                         f'[web]\nserver = "{server}"\n')
    return parse_server_config(data, str(root / "multipool.toml"))


def test_switching_web_server_disables_the_other_site(
        throwaway: Throwaway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("the system's sites are root's: needs root (CI is root)")
    etc_nginx = tmp_path / "etc-nginx"
    for sub in ("sites-available", "sites-enabled"):
        (etc_nginx / sub).mkdir(parents=True)
    nginx_link = etc_nginx / "sites-enabled" / "multipool"
    apache_link = throwaway.conf / "sites-enabled" / "multipool.conf"
    # a2ensite/a2dissite record what they did in the throwaway state, not the system's.
    monkeypatch.setenv("APACHE_STATE_DIRECTORY", str(throwaway.root / "state"))
    if True:
        for change in web.site_changes(server_config(tmp_path, "nginx"), nginx_dir=etc_nginx,
                                       apache_dir=throwaway.conf):
            change.apply()
        assert nginx_link.is_symlink() and not apache_link.exists()

        plan = web.site_changes(server_config(tmp_path, "apache"), nginx_dir=etc_nginx,
                                apache_dir=throwaway.conf)
        assert ops(plan)[0] == "nginx.disable"
        assert "apache.site" in ops(plan)
        for change in plan:
            change.apply()
        assert not nginx_link.is_symlink() and apache_link.is_symlink()
        # The nginx files stay (with any edits), unused.
        assert (etc_nginx / "sites-available" / "multipool").exists()
        assert web.site_changes(server_config(tmp_path, "apache"), nginx_dir=etc_nginx,
                                apache_dir=throwaway.conf) == []

        plan = web.site_changes(server_config(tmp_path, "nginx"), nginx_dir=etc_nginx,
                                apache_dir=throwaway.conf)
        assert ops(plan) == ["apache.disable", "files.link"]
        for change in plan:
            change.apply()
        assert nginx_link.is_symlink() and not apache_link.exists()
        assert throwaway.configtest().returncode == 0
