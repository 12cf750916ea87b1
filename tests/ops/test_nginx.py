"""The generated nginx site: accepted by a real `nginx -t`, a real nginx proxies through it
to a real HTTP server with the security headers, caching, gzip and body limit it promises,
bad values never reach the text, and installing it is idempotent, tests the config with
nginx and reloads a running nginx (a throwaway one under tmp_path, never the system's)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from multipool.devnet import free_port
from multipool.errors import ConfigError
from multipool.ops import nginx as site
from tests.support.requirements import missing

MIME_TYPES = Path("/etc/nginx/mime.types")
INDEX = b"<!doctype html><title>pools</title><h1>All pools</h1>\n"
CSS = b"body { color: #333; }\n" * 40  # over gzip_min_length
API = json.dumps({"pools": [{"prefix": "ltc", "hashrate": 1.5e9}] * 30}).encode()
ROUTES = {"/": (INDEX, "text/html"), "/static/x.css": (CSS, "text/css"),
          "/api/pools": (API, "application/json")}
# urllib would use a proxy from the environment; these requests go to loopback only.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def nginx_bin() -> str:
    found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        missing("nginx", "apt-get install nginx (or run `make setup`)")
    assert found is not None
    return found


# --- a throwaway nginx under tmp_path ----------------------------------------------------


def prefix_nginx(nginx_bin: str, root: Path, includes: list[str]) -> list[str]:
    """Write ``root/nginx.conf`` (every path nginx writes inside ``root``; the http block
    includes ``includes``) and return the argv prefix that runs nginx with it."""
    (root / "temp").mkdir(parents=True, exist_ok=True)
    temp = {name: root / "temp" / name for name in ("client_body", "proxy", "fastcgi",
                                                    "uwsgi", "scgi")}
    lines = [
        # A root master would run its workers as nobody, who cannot enter pytest's 0700
        # tmp_path; the user directive is ignored (with a warning) when not root.
        *(["user root;"] if os.geteuid() == 0 else []),
        f"pid {root / 'nginx.pid'};",
        f"error_log {root / 'error.log'} info;",
        "events {}",
        "http {",
        *([f"    include {MIME_TYPES};"] if MIME_TYPES.exists() else []),
        f"    access_log {root / 'access.log'};",
        *(f"    {name}_temp_path {path};" for name, path in temp.items()),
        *(f"    include {include};" for include in includes),
        "}",
        "",
    ]
    (root / "nginx.conf").write_text("\n".join(lines))
    # -e: the error log before the config is read (the built-in one is under /var/log).
    return [nginx_bin, "-p", f"{root}/", "-c", str(root / "nginx.conf"),
            "-e", str(root / "error.log")]


def nginx_test(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=60,
                          check=False)


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nginx does not listen on {port}:\n{log.read_text()}")


@dataclass
class RunningNginx:
    argv: list[str]
    process: subprocess.Popen[bytes]
    pid_file: Path


def start_nginx(argv: list[str], port: int, root: Path) -> RunningNginx:
    log = root / "error.log"
    process = subprocess.Popen([*argv, "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    nginx = RunningNginx(argv, process, root / "nginx.pid")
    try:
        wait_for_port(port, process, log)
        deadline = time.monotonic() + 10
        while not nginx.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    except BaseException:
        stop_nginx(nginx)
        raise
    return nginx


def stop_nginx(nginx: RunningNginx) -> None:
    if nginx.process.poll() is None:
        subprocess.run([*nginx.argv, "-s", "quit"], capture_output=True, timeout=30,
                       check=False)
        try:
            nginx.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            nginx.process.kill()
            nginx.process.wait(timeout=10)
            pytest.fail("nginx did not quit on `nginx -s quit`")
    assert nginx.process.returncode == 0, f"nginx exited with {nginx.process.returncode}"


# --- a tiny upstream standing in for the web process --------------------------------------


@dataclass
class Upstream:
    port: int
    seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    record = Upstream(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            record.seen.append({"path": self.path, **dict(self.headers.items())})
            body, kind = ROUTES.get(self.path, (b"not found\n", "text/plain"))
            self.send_response(200 if self.path in ROUTES else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    record.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def fetch(port: int, path: str, *, host: str = "pool.example",
          headers: dict[str, str] | None = None, data: bytes | None = None
          ) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Host": host, **(headers or {})})
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


# --- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize("routing", ["path", "subdomain"])
def test_rendered_site_passes_a_real_nginx_config_test(nginx_bin: str, tmp_path: Path,
                                                      routing: str) -> None:
    text = site.render_site(server_name="pool.example", upstream="127.0.0.1:8080",
                            listen_port=free_port(), routing=routing)
    (tmp_path / "multipool").write_text(text)
    argv = prefix_nginx(nginx_bin, tmp_path / "nginx", [str(tmp_path / "multipool")])
    result = nginx_test(argv)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    # nginx -t proves it parses; a broken site does not, so the check above can fail.
    (tmp_path / "multipool").write_text(text.replace("server_tokens off;", "server_tokens"))
    assert nginx_test(argv).returncode != 0


def test_site_text_has_what_the_brief_promises() -> None:
    text = site.render_site(server_name="pool.example", upstream="127.0.0.1:8080")
    assert text.startswith("# Generated by multipool: `multipool init` rewrites this file")
    assert "multipool.toml" in text and "certbot" in text
    for line in ["listen 80;", "listen [::]:80;", "server_name pool.example;",
                 "server_tokens off;", "client_max_body_size 16k;",
                 "proxy_pass http://127.0.0.1:8080;", "proxy_set_header Host $host;",
                 "proxy_set_header X-Real-IP $remote_addr;",
                 "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                 "proxy_set_header X-Forwarded-Proto $scheme;", "expires 7d;",
                 "location /static/ {", "add_header X-Frame-Options DENY always;"]:
        assert line in text.splitlines() or f"    {line}" in text.splitlines() \
            or f"        {line}" in text.splitlines(), line
    wild = site.render_site(server_name="pool.example", upstream="127.0.0.1:8080",
                            routing="subdomain")
    assert "    server_name pool.example *.pool.example;" in wild.splitlines()
    # The only difference between the routings is the server_name line.
    assert [a for a, b in zip(text.splitlines(), wild.splitlines(), strict=True)
            if a != b] == ["    server_name pool.example;"]


@pytest.mark.parametrize(("listen", "proxied"), [
    ("0.0.0.0:8080", "127.0.0.1:8080"), ("[::]:8080", "[::1]:8080"),
    ("localhost:9000", "localhost:9000"), ("[::1]:8080", "[::1]:8080"),
    ("10.0.0.5:08080", "10.0.0.5:8080"),
])
def test_upstream_is_the_address_nginx_can_reach(listen: str, proxied: str) -> None:
    text = site.render_site(server_name="localhost", upstream=listen)
    assert text.count(f"proxy_pass http://{proxied};") == 2


@pytest.mark.parametrize("value", [
    "pool.example; return 500", "pool.example{", "pool.example}", 'pool"example',
    "pool'example", "pool example", "pool.example\n", "pool.example\tx", "", "$host",
    "-pool.example", "pool..example", "pool_example", "pool.example:80", "a" * 64 + ".example",
])
def test_bad_public_host_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        site.render_site(server_name=value, upstream="127.0.0.1:8080")
    assert caught.value.key == "server.public_host"


@pytest.mark.parametrize("value", [
    "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:0", "127.0.0.1:65536", ":8080",
    "127.0.0.1:8080;", "127.0.0.1:8080 ", "127.0.0.1:80\n", "127.0.0.1:80}", "127.0.0.1{:80",
    "'127.0.0.1':80", "unix:/run/web.sock", "http://127.0.0.1:8080", "bad host:8080",
    "127.0.0.1:-1",
])
def test_bad_web_listen_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        site.render_site(server_name="localhost", upstream=value)
    assert caught.value.key == "web.listen"


@pytest.mark.parametrize("name", ["_", "localhost", "pool.example", "203.0.113.7",
                                  "POOL-1.Example.ORG"])
def test_good_public_hosts_are_accepted(name: str) -> None:
    assert f"server_name {name};" in site.render_site(server_name=name,
                                                      upstream="127.0.0.1:1")


def test_subdomain_routing_needs_a_host_name() -> None:
    for name in ("_", "203.0.113.7"):
        with pytest.raises(ConfigError) as caught:
            site.render_site(server_name=name, upstream="127.0.0.1:1", routing="subdomain")
        assert caught.value.key == "server.public_host"
    with pytest.raises(ConfigError) as caught:
        site.render_site(server_name="localhost", upstream="127.0.0.1:1", routing="vhost")
    assert caught.value.key == "web.routing"


@pytest.mark.parametrize("port", [0, 65536, -80, True])
def test_bad_listen_port_is_refused(port: int) -> None:
    with pytest.raises(ConfigError):
        site.render_site(server_name="localhost", upstream="127.0.0.1:1", listen_port=port)


# --- a real nginx proxying through the site -------------------------------------------------


def test_real_nginx_proxies_with_headers_cache_gzip_and_body_limit(
        nginx_bin: str, tmp_path: Path, upstream: Upstream) -> None:
    port, wild_port = free_port(), free_port()
    files = []
    for listen, routing in ((port, "path"), (wild_port, "subdomain")):
        path = tmp_path / f"site-{routing}"
        path.write_text(site.render_site(server_name="pool.example", upstream=upstream.address,
                                         listen_port=listen, routing=routing))
        # A default server on the same port: a Host the site does not name lands here.
        default = tmp_path / f"default-{routing}"
        default.write_text(f"server {{ listen {listen} default_server; return 418; }}\n")
        files += [str(path), str(default)]
    root = tmp_path / "nginx"
    argv = prefix_nginx(nginx_bin, root, files)
    nginx = start_nginx(argv, port, root)
    try:
        status, headers, body = fetch(port, "/")
        assert (status, body) == (200, INDEX)
        assert headers["Server"] == "nginx"  # server_tokens off: no version
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
        # What the web app learns about the client.
        seen = upstream.seen[-1]
        assert seen["Host"] == "pool.example"
        assert seen["X-Real-IP"] == "127.0.0.1"
        assert seen["X-Forwarded-For"] == "127.0.0.1"
        assert seen["X-Forwarded-Proto"] == "http"

        status, headers, body = fetch(port, "/static/x.css")
        assert (status, body) == (200, CSS)
        assert headers["Cache-Control"] == "max-age=604800"
        assert "Expires" in headers
        assert headers["X-Frame-Options"] == "DENY"  # not lost in the /static/ location
        status, headers, body = fetch(port, "/")
        assert "Cache-Control" not in headers  # pages are not cached

        for url, original in (("/static/x.css", CSS), ("/api/pools", API)):
            status, headers, body = fetch(port, url, headers={"Accept-Encoding": "gzip"})
            assert status == 200 and headers.get("Content-Encoding") == "gzip", url
            assert gzip.decompress(body) == original
        # Behind a CDN or another proxy (a Via header) too, and caches keep both forms.
        status, headers, body = fetch(port, "/api/pools", headers={
            "Accept-Encoding": "gzip", "Via": "1.1 cdn.example"})
        assert headers.get("Content-Encoding") == "gzip" and gzip.decompress(body) == API
        assert headers["Vary"] == "Accept-Encoding"

        status, headers, _ = fetch(port, "/", data=b"x" * 32 * 1024)
        assert status == 413  # client_max_body_size 16k
        assert headers["X-Content-Type-Options"] == "nosniff"  # `always`: on errors too
        status, _, body = fetch(port, "/", data=b"x" * 1024)
        assert (status, body) == (200, INDEX)

        # Path routing answers the public host only; subdomain routing its subdomains too.
        assert fetch(port, "/", host="ltc.pool.example")[0] == 418
        assert fetch(wild_port, "/", host="ltc.pool.example")[:3:2] == (200, INDEX)
        assert fetch(wild_port, "/", host="pool.example")[:3:2] == (200, INDEX)
        assert fetch(wild_port, "/", host="other.example")[0] == 418
    finally:
        stop_nginx(nginx)


# --- installing the site ---------------------------------------------------------------------


def nginx_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "etc-nginx"
    (directory / "sites-available").mkdir(parents=True)
    (directory / "sites-enabled").mkdir()
    return directory


def ops(plan: list[site.Change]) -> list[str]:
    return [change.operation for change in plan]


def test_site_changes_install_once_and_then_nothing(tmp_path: Path) -> None:
    etc = nginx_dir(tmp_path)
    owner = "root" if os.geteuid() == 0 else None
    kwargs: dict[str, Any] = dict(server_name="pool.example", upstream="127.0.0.1:8080",
                                  nginx_dir=etc, owner=owner, group=owner)
    first = site.site_changes(**kwargs, check=True)
    assert ops(first) == ["files.file", "files.link", "nginx.reload"]
    assert first[-1].target == str(etc / "sites-available" / "multipool")
    plan = site.site_changes(**kwargs, check=False)
    assert ops(plan) == ["files.file", "files.link"]
    for change in plan:
        change.apply()
    available = etc / "sites-available" / "multipool"
    assert available.read_text() == site.render_site(server_name="pool.example",
                                                     upstream="127.0.0.1:8080")
    assert available.stat().st_mode & 0o7777 == 0o644
    if owner == "root":
        assert (available.stat().st_uid, available.stat().st_gid) == (0, 0)
    link = etc / "sites-enabled" / "multipool"
    assert os.readlink(link) == str(available)
    assert site.site_changes(**kwargs, check=True) == []

    # A changed setting rewrites the file only, and tests and reloads again.
    moved: dict[str, Any] = {**kwargs, "upstream": "127.0.0.1:9090"}
    assert ops(site.site_changes(**moved, check=True)) == ["files.file", "nginx.reload"]


def test_check_none_tests_only_where_nginx_is_installed(tmp_path: Path,
                                                        nginx_bin: str) -> None:
    etc = nginx_dir(tmp_path)
    kwargs: dict[str, Any] = dict(server_name="localhost", upstream="127.0.0.1:8080",
                                  nginx_dir=etc, owner=None, group=None)
    with_nginx = site.site_changes(**kwargs, nginx=[nginx_bin])
    assert ops(with_nginx)[-1] == "nginx.reload"
    without = site.site_changes(**kwargs, nginx=[str(tmp_path / "no-nginx")])
    assert ops(without) == ["files.file", "files.link"]


def test_missing_sites_available_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        site.site_changes(server_name="localhost", upstream="0.0.0.0:8080",
                          nginx_dir=tmp_path, check=False)
    assert str(caught.value) == (
        f"{tmp_path}/sites-available does not exist: install nginx (apt-get install nginx) "
        "or configure your own web server to proxy to 127.0.0.1:8080")
    (tmp_path / "sites-available").mkdir()
    with pytest.raises(ConfigError, match="sites-enabled does not exist: install nginx"):
        site.site_changes(server_name="localhost", upstream="0.0.0.0:8080",
                          nginx_dir=tmp_path, check=False)
    assert list(tmp_path.iterdir()) == [tmp_path / "sites-available"]


def test_bad_value_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    etc = nginx_dir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        site.site_changes(server_name="pool.example;\nserver{", upstream="127.0.0.1:8080",
                          nginx_dir=etc, check=False)
    assert caught.value.key == "server.public_host"
    with pytest.raises(ConfigError) as caught:
        site.site_changes(server_name="pool.example", upstream="127.0.0.1:80; evil",
                          nginx_dir=etc, check=False)
    assert caught.value.key == "web.listen"
    assert not any(etc.rglob("*multipool*"))


def test_reload_change_reloads_a_running_nginx(nginx_bin: str, tmp_path: Path,
                                               upstream: Upstream) -> None:
    etc = nginx_dir(tmp_path)
    root = tmp_path / "nginx"
    placeholder, port = free_port(), free_port()
    (tmp_path / "placeholder").write_text(f"server {{ listen {placeholder}; return 204; }}\n")
    argv = prefix_nginx(nginx_bin, root, [str(tmp_path / "placeholder"),
                                          f"{etc}/sites-enabled/*"])
    nginx = start_nginx(argv, placeholder, root)
    try:
        with pytest.raises(OSError):
            fetch(port, "/")  # nothing listens there before the site
        kwargs: dict[str, Any] = dict(
            server_name="pool.example", upstream=upstream.address, listen_port=port,
            nginx_dir=etc, check=True, nginx=argv, pid_file=nginx.pid_file, owner=None,
            group=None)
        plan = site.site_changes(**kwargs)
        assert ops(plan) == ["files.file", "files.link", "nginx.reload"]
        results = [change.apply() for change in plan]
        assert results[-1] == "reloaded"
        deadline = time.monotonic() + 15
        while True:  # the new workers take the new config a moment after the signal
            try:
                assert fetch(port, "/")[:3:2] == (200, INDEX)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert site.site_changes(**kwargs) == []
        assert nginx.process.poll() is None
    finally:
        stop_nginx(nginx)
    # Stopped: the same change only tests the config.
    assert not site.nginx_running(nginx.pid_file)
    assert site.check_and_reload(site=etc / "sites-available" / "multipool",
                                 link=etc / "sites-enabled" / "multipool", nginx=argv,
                                 pid_file=nginx.pid_file) == "tested"


def test_stale_pid_file_means_test_only(nginx_bin: str, tmp_path: Path) -> None:
    etc = nginx_dir(tmp_path)
    root = tmp_path / "nginx"
    argv = prefix_nginx(nginx_bin, root, [f"{etc}/sites-enabled/*"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    # The pid file the config names says a dead pid: `nginx -s reload` would fail on it.
    (root / "nginx.pid").write_text(f"{gone.pid}\n")
    assert not site.nginx_running(root / "nginx.pid")
    # A live pid of another program (this one) is not nginx either.
    assert not site.nginx_running(_pid_file(tmp_path, os.getpid()))
    plan = site.site_changes(server_name="localhost", upstream="127.0.0.1:8080",
                             listen_port=free_port(), nginx_dir=etc, check=True, nginx=argv,
                             pid_file=root / "nginx.pid", owner=None, group=None)
    assert [change.apply() for change in plan][-1] == "tested"


def _pid_file(tmp_path: Path, pid: int) -> Path:
    path = tmp_path / f"pid-{pid}"
    path.write_text(str(pid))
    return path


def test_site_nginx_rejects_fails_the_change_and_is_disabled(
        nginx_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = nginx_dir(tmp_path)
    root = tmp_path / "nginx"
    argv = prefix_nginx(nginx_bin, root, [f"{etc}/sites-enabled/*"])
    kwargs: dict[str, Any] = dict(
        server_name="localhost", upstream="127.0.0.1:8080", listen_port=free_port(),
        nginx_dir=etc, check=True, nginx=argv, pid_file=root / "nginx.pid", owner=None,
        group=None)
    # A site nginx rejects (render_site itself never produces one: its values are checked).
    monkeypatch.setattr(site, "render_site",
                        lambda **_: "server {\n    bogus_directive on;\n}\n")
    plan = site.site_changes(**kwargs)
    assert ops(plan) == ["files.file", "files.link", "nginx.reload"]
    for change in plan[:-1]:
        change.apply()
    link = etc / "sites-enabled" / "multipool"
    assert link.is_symlink()
    with pytest.raises(site.NginxError) as caught:
        plan[-1].apply()
    message = str(caught.value)
    assert 'unknown directive "bogus_directive"' in message  # nginx's own words
    assert f"{link} removed" in message
    assert not link.exists() and not link.is_symlink()  # nginx still starts
    assert nginx_test(argv).returncode == 0
    # The next run finds the link to make and tests again.
    assert ops(site.site_changes(**kwargs)) == ["files.link", "nginx.reload"]
    monkeypatch.undo()
    plan = site.site_changes(**kwargs)
    assert ops(plan) == ["files.file", "files.link", "nginx.reload"]
    assert [change.apply() for change in plan][-1] == "tested"
    assert site.site_changes(**kwargs) == []
