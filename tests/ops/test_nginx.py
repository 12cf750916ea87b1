"""The generated nginx site: accepted by a real `nginx -t`, a real nginx proxies through it
to a real HTTP server (and a real `multipool web serve`) with the Host, forwarded headers,
security headers, caching, gzip and body limit it promises and /metrics denied, bad values
never reach the text, installing it is idempotent, tests the config with nginx and
reloads a running nginx (a throwaway one under tmp_path, never the system's), a site
nginx rejects is rolled back without a reload, and certbot's TLS lines survive a re-run."""

from __future__ import annotations

import gzip
import os
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from multipool.config import parse_server_config
from multipool.devnet import free_port
from multipool.errors import ConfigError
from multipool.ops import nginx as site
from multipool.ops import sites, web
from tests.ops.proxies import (
    API,
    CSS,
    INDEX,
    Upstream,
    assert_security_headers,
    certbot_nginx_edit,
    check_forwarding,
    check_web_process_behind,
    fetch,
    fetch_when_up,
    self_signed,
    wait_for_port,
    web_serve,
    which,
)
from tests.support.requirements import missing

MIME_TYPES = Path("/etc/nginx/mime.types")


@pytest.fixture
def nginx_bin() -> str:
    found = which("nginx")
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
        wait_for_port(port, process, log, "nginx")
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


# --- rendering -----------------------------------------------------------------------------


def write_site(directory: Path, *, routing: str = "path", upstream: str = "127.0.0.1:8080",
               listen_port: int = 80, server_name: str = "pool.example") -> list[str]:
    """The files of the site in ``directory``; returns what the http block includes
    (the header maps, then the site file, which includes the server block's part)."""
    include = directory / "multipool.conf"
    text = site.render(server_name=server_name, upstream=upstream, listen_port=listen_port,
                       routing=routing, include=include)
    include.write_text(text.include)
    (directory / "maps.conf").write_text(text.http_include)
    (directory / "multipool").write_text(text.site)
    return [str(directory / "maps.conf"), str(directory / "multipool")]


@pytest.mark.parametrize("routing", ["path", "subdomain"])
def test_rendered_site_passes_a_real_nginx_config_test(nginx_bin: str, tmp_path: Path,
                                                      routing: str) -> None:
    files = write_site(tmp_path, routing=routing, listen_port=free_port())
    argv = prefix_nginx(nginx_bin, tmp_path / "nginx", files)
    result = nginx_test(argv)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    # nginx -t proves it parses; a broken include does not, so the check above can fail.
    include = tmp_path / "multipool.conf"
    include.write_text(include.read_text().replace("server_tokens off;", "server_tokens"))
    assert nginx_test(argv).returncode != 0


def lines_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_site_text_has_what_the_brief_promises() -> None:
    include = Path("/etc/nginx/snippets/multipool.conf")
    text = site.render(server_name="pool.example", upstream="127.0.0.1:8080",
                       include=include)
    assert text.include.startswith("# Generated by multipool from multipool.toml")
    for line in ["server_tokens off;", "client_max_body_size 16k;",
                 "proxy_pass http://127.0.0.1:8080;", "proxy_set_header Host $host;",
                 "proxy_set_header X-Real-IP $remote_addr;",
                 "proxy_set_header X-Forwarded-For $remote_addr;",
                 "proxy_set_header X-Forwarded-Proto $scheme;", "expires 7d;",
                 "location /static/ {",
                 "add_header X-Frame-Options $multipool_x_frame_options always;",
                 "location = /metrics {", "location ^~ /metrics/ {", "deny all;"]:
        assert line in lines_of(text.include), line
    # The site's header values, where the app sent none.
    assert "map $upstream_http_x_frame_options $multipool_x_frame_options {" in \
        text.http_include.splitlines()
    assert '    "" "DENY";' in text.http_include.splitlines()
    # The site file: listeners outside the marked block, the names and the include in it.
    site_lines = lines_of(text.site)
    assert "certbot --nginx" in text.site
    assert site_lines.index("listen 80;") < site_lines.index(sites.BEGIN)
    assert "listen [::]:80;" in site_lines
    assert text.block == ["server_name pool.example;", f"include {include};"]
    begin = site_lines.index(sites.BEGIN)
    assert site_lines[begin + 1:begin + 4] == [*text.block, sites.END]
    wild = site.render(server_name="pool.example", upstream="127.0.0.1:8080",
                       routing="subdomain", include=include)
    assert wild.block[0] == "server_name pool.example *.pool.example;"
    # The routings differ only in the names: the proxy is the same.
    assert wild.include == text.include
    assert [a for a, b in zip(text.site.splitlines(), wild.site.splitlines(), strict=True)
            if a != b] == ["    server_name pool.example;"]


@pytest.mark.parametrize(("listen", "proxied"), [
    ("0.0.0.0:8080", "127.0.0.1:8080"), ("[::]:8080", "[::1]:8080"),
    ("localhost:9000", "localhost:9000"), ("[::1]:8080", "[::1]:8080"),
    ("10.0.0.5:08080", "10.0.0.5:8080"),
])
def test_upstream_is_the_address_nginx_can_reach(listen: str, proxied: str) -> None:
    text = site.render(server_name="localhost", upstream=listen)
    assert text.include.count(f"proxy_pass http://{proxied};") == 2


@pytest.mark.parametrize("value", [
    "pool.example; return 500", "pool.example{", "pool.example}", 'pool"example',
    "pool'example", "pool example", "pool.example\n", "pool.example\tx", "", "$host",
    "-pool.example", "pool..example", "pool_example", "pool.example:80", "a" * 64 + ".example",
])
def test_bad_public_host_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        site.render(server_name=value, upstream="127.0.0.1:8080")
    assert caught.value.key == "server.public_host"


@pytest.mark.parametrize("value", [
    "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:0", "127.0.0.1:65536", ":8080",
    "127.0.0.1:8080;", "127.0.0.1:8080 ", "127.0.0.1:80\n", "127.0.0.1:80}", "127.0.0.1{:80",
    "'127.0.0.1':80", "unix:/run/web.sock", "http://127.0.0.1:8080", "bad host:8080",
    "127.0.0.1:-1",
])
def test_bad_web_listen_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        site.render(server_name="localhost", upstream=value)
    assert caught.value.key == "web.listen"


@pytest.mark.parametrize("name", ["_", "localhost", "pool.example", "203.0.113.7",
                                  "POOL-1.Example.ORG"])
def test_good_public_hosts_are_accepted(name: str) -> None:
    assert f"server_name {name};" in site.render(server_name=name,
                                                 upstream="127.0.0.1:1").block


def test_subdomain_routing_needs_a_host_name() -> None:
    for name in ("_", "203.0.113.7"):
        with pytest.raises(ConfigError) as caught:
            site.render(server_name=name, upstream="127.0.0.1:1", routing="subdomain")
        assert caught.value.key == "server.public_host"
    with pytest.raises(ConfigError) as caught:
        site.render(server_name="localhost", upstream="127.0.0.1:1", routing="vhost")
    assert caught.value.key == "web.routing"


@pytest.mark.parametrize("port", [0, 65536, -80, True])
def test_bad_listen_port_is_refused(port: int) -> None:
    with pytest.raises(ConfigError):
        site.render(server_name="localhost", upstream="127.0.0.1:1", listen_port=port)


# --- a real nginx proxying through the site -------------------------------------------------


def test_real_nginx_proxies_with_headers_cache_gzip_and_body_limit(
        nginx_bin: str, tmp_path: Path, upstream: Upstream) -> None:
    port, wild_port = free_port(), free_port()
    files = []
    for listen, routing in ((port, "path"), (wild_port, "subdomain")):
        directory = tmp_path / routing
        directory.mkdir()
        files += write_site(directory, routing=routing, upstream=upstream.address,
                            listen_port=listen)
        # A default server on the same port: a Host the site does not name lands here.
        default = tmp_path / f"default-{routing}"
        default.write_text(f"server {{ listen {listen} default_server; return 418; }}\n")
        files.append(str(default))
    root = tmp_path / "nginx"
    argv = prefix_nginx(nginx_bin, root, files)
    nginx = start_nginx(argv, port, root)
    try:
        front = check_forwarding(port, upstream)
        assert front["Server"] == "nginx"  # server_tokens off: no version

        status, headers, body = fetch(port, "/static/x.css")
        assert (status, body) == (200, CSS)
        assert headers["Cache-Control"] == "max-age=604800"
        assert "Expires" in headers
        assert headers["X-Frame-Options"] == "DENY"  # not lost in the /static/ location
        status, headers, body = fetch(port, "/")
        assert "Cache-Control" not in headers  # pages are not cached

        for url, original in (("/", INDEX), ("/static/x.css", CSS), ("/api/pools", API)):
            status, headers, body = fetch(port, url, headers={"Accept-Encoding": "gzip"})
            assert status == 200 and headers.get("Content-Encoding") == "gzip", url
            assert gzip.decompress(body) == original
        # Behind a CDN or another proxy (a Via header) too, and caches keep both forms.
        status, headers, body = fetch(port, "/api/pools", headers={
            "Accept-Encoding": "gzip", "Via": "1.1 cdn.example"})
        assert headers.get("Content-Encoding") == "gzip" and gzip.decompress(body) == API
        assert headers["Vary"] == "Accept-Encoding"

        # /metrics never reaches the app through the site (the upstream would serve it).
        before = len(upstream.seen)
        for path in ("/metrics", "/metrics/x", "/metrics?x=1"):
            status, headers, _ = fetch(port, path)
            assert status == 403, path
            assert_security_headers(headers)  # on nginx's own error page too
        assert len(upstream.seen) == before
        assert fetch(port, "/metricsx")[0] == 404  # only /metrics itself is denied
        assert upstream.paths()[-1] == "/metricsx"

        status, headers, _ = fetch(port, "/", data=b"x" * 32 * 1024)
        assert status == 413  # client_max_body_size 16k
        assert headers["X-Content-Type-Options"] == "nosniff"  # `always`: on errors too
        status, _, body = fetch(port, "/", data=b"x" * 1024)
        assert (status, body) == (200, INDEX)

        # Path routing answers the public host only; subdomain routing its subdomains too,
        # and the app is told which one was asked for.
        assert fetch(port, "/", host="ltc.pool.example")[0] == 418
        assert fetch(wild_port, "/", host="ltc.pool.example")[:3:2] == (200, INDEX)
        assert upstream.seen[-1]["Host"] == "ltc.pool.example"
        assert fetch(wild_port, "/", host="pool.example")[:3:2] == (200, INDEX)
        assert upstream.seen[-1]["Host"] == "pool.example"
        assert fetch(wild_port, "/", host="other.example")[0] == 418
    finally:
        stop_nginx(nginx)


@pytest.mark.parametrize("routing", ["path", "subdomain"])
def test_real_web_process_behind_a_real_nginx(nginx_bin: str, tmp_path: Path,
                                              routing: str) -> None:
    """`multipool web serve` itself behind the site: its page, its stylesheet cached and
    compressed, its health check, and no /metrics through the proxy."""
    port = free_port()
    with web_serve(tmp_path / "server", routing=routing) as web:
        files = write_site(tmp_path, routing=routing, upstream=web.address, listen_port=port)
        root = tmp_path / "nginx"
        nginx = start_nginx(prefix_nginx(nginx_bin, root, files), port, root)
        try:
            stylesheet = check_web_process_behind(port, routing)
            assert stylesheet["Cache-Control"] == "max-age=604800"
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
    assert ops(first) == ["files.directory", "files.directory", "files.file", "files.file",
                          "files.file", "files.link", "nginx.reload"]
    assert first[-1].target == str(etc / "sites-available" / "multipool")
    plan = site.site_changes(**kwargs, check=False)
    for change in plan:
        change.apply()
    include = etc / "snippets" / "multipool.conf"
    available = etc / "sites-available" / "multipool"
    text = site.render(server_name="pool.example", upstream="127.0.0.1:8080",
                       include=include)
    http_include = etc / "conf.d" / "multipool.conf"
    assert include.read_text() == text.include
    assert http_include.read_text() == text.http_include
    assert available.read_text() == text.site
    for path in (include, http_include, available):
        assert path.stat().st_mode & 0o7777 == 0o644
        if owner == "root":
            assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
    link = etc / "sites-enabled" / "multipool"
    assert os.readlink(link) == str(available)
    assert site.site_changes(**kwargs, check=True) == []

    # A changed upstream rewrites the include file only, and tests and reloads again.
    moved: dict[str, Any] = {**kwargs, "upstream": "127.0.0.1:9090"}
    plan = site.site_changes(**moved, check=True)
    assert [(c.operation, c.target) for c in plan] == [
        ("files.file", str(include)), ("nginx.reload", str(available))]
    # A changed routing rewrites the site file's marked block only.
    wild: dict[str, Any] = {**kwargs, "routing": "subdomain"}
    plan = site.site_changes(**wild, check=False)
    assert [(c.operation, c.target) for c in plan] == [("files.file", str(available))]
    plan[0].apply()
    assert "    server_name pool.example *.pool.example;" in available.read_text().splitlines()
    assert available.read_text() == site.render(
        server_name="pool.example", upstream="127.0.0.1:8080", routing="subdomain",
        include=include).site


def test_operators_edits_outside_the_block_stay(tmp_path: Path) -> None:
    etc = nginx_dir(tmp_path)
    kwargs: dict[str, Any] = dict(server_name="pool.example", upstream="127.0.0.1:8080",
                                  nginx_dir=etc, owner=None, group=None, check=False)
    for change in site.site_changes(**kwargs):
        change.apply()
    available = etc / "sites-available" / "multipool"
    edited = available.read_text().replace(
        "    listen 80;\n", "    listen 80;\n    access_log /var/log/nginx/pool.log;\n")
    edited = edited.replace("server_name pool.example;", "server_name hand.example;")
    available.write_text(edited)
    plan = site.site_changes(**kwargs)
    assert ops(plan) == ["files.file"]  # the block is put right, nothing else
    plan[0].apply()
    assert available.read_text() == edited.replace("server_name hand.example;",
                                                   "server_name pool.example;")
    assert "    access_log /var/log/nginx/pool.log;" in available.read_text().splitlines()


def test_site_without_its_markers_is_refused_with_the_fix(tmp_path: Path) -> None:
    etc = nginx_dir(tmp_path)
    available = etc / "sites-available" / "multipool"
    available.write_text("server {\n    listen 80;\n    server_name pool.example;\n}\n")
    with pytest.raises(ConfigError) as caught:
        site.site_changes(server_name="pool.example", upstream="127.0.0.1:8080",
                          nginx_dir=etc, owner=None, group=None, check=False)
    assert caught.value.file == str(available)
    assert "# BEGIN multipool" in str(caught.value) and "delete the file" in str(caught.value)
    assert available.read_text().count("\n") == 4  # untouched


def test_a_site_an_older_multipool_wrote_whole_is_replaced(tmp_path: Path) -> None:
    etc = nginx_dir(tmp_path)
    available = etc / "sites-available" / "multipool"
    available.write_text(f"{sites.OLD_HEADER}, so edits here are\n# lost.\nserver {{\n"
                         "    listen 80;\n    location / { proxy_pass http://x; }\n}\n")
    plan = site.site_changes(server_name="pool.example", upstream="127.0.0.1:8080",
                             nginx_dir=etc, owner=None, group=None, check=False)
    for change in plan:
        change.apply()
    assert available.read_text() == site.render(
        server_name="pool.example", upstream="127.0.0.1:8080",
        include=etc / "snippets" / "multipool.conf").site


def test_check_none_tests_only_where_nginx_is_installed(tmp_path: Path,
                                                        nginx_bin: str) -> None:
    etc = nginx_dir(tmp_path)
    kwargs: dict[str, Any] = dict(server_name="localhost", upstream="127.0.0.1:8080",
                                  nginx_dir=etc, owner=None, group=None)
    with_nginx = site.site_changes(**kwargs, nginx=[nginx_bin])
    assert ops(with_nginx)[-1] == "nginx.reload"
    without = site.site_changes(**kwargs, nginx=[str(tmp_path / "no-nginx")])
    assert "nginx.reload" not in ops(without) and ops(without)[-1] == "files.link"


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


def reloads(root: Path) -> int:
    """How often the throwaway nginx took a reload signal (its error log, level info)."""
    return (root / "error.log").read_text().count("(SIGHUP) received")


def test_reload_change_reloads_a_running_nginx(nginx_bin: str, tmp_path: Path,
                                               upstream: Upstream) -> None:
    etc = nginx_dir(tmp_path)
    root = tmp_path / "nginx"
    placeholder, port = free_port(), free_port()
    (tmp_path / "placeholder").write_text(f"server {{ listen {placeholder}; return 204; }}\n")
    argv = prefix_nginx(nginx_bin, root, [str(tmp_path / "placeholder"),
                                          f"{etc}/conf.d/*.conf", f"{etc}/sites-enabled/*"])
    nginx = start_nginx(argv, placeholder, root)
    try:
        with pytest.raises(OSError):
            fetch(port, "/")  # nothing listens there before the site
        kwargs: dict[str, Any] = dict(
            server_name="pool.example", upstream=upstream.address, listen_port=port,
            nginx_dir=etc, check=True, nginx=argv, pid_file=nginx.pid_file, owner=None,
            group=None)
        plan = site.site_changes(**kwargs)
        assert ops(plan)[-1] == "nginx.reload"
        results = [change.apply() for change in plan]
        assert results[-1] == "reloaded"
        # The new workers take the new config a moment after the signal.
        assert fetch_when_up(port, "/")[:3:2] == (200, INDEX)
        assert reloads(root) == 1
        assert site.site_changes(**kwargs) == []
        assert nginx.process.poll() is None
    finally:
        stop_nginx(nginx)
    # Stopped: the same change only tests the config.
    assert not site.nginx_running(nginx.pid_file)
    assert site.check_and_reload(snapshot=sites.Snapshot.take([], []), nginx=argv,
                                 pid_file=nginx.pid_file) == "tested"


def test_stale_pid_file_means_test_only(nginx_bin: str, tmp_path: Path) -> None:
    etc = nginx_dir(tmp_path)
    root = tmp_path / "nginx"
    argv = prefix_nginx(nginx_bin, root, [f"{etc}/conf.d/*.conf", f"{etc}/sites-enabled/*"])
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


BROKEN = "bogus_directive on;\n"


def test_a_site_nginx_rejects_is_rolled_back_and_not_reloaded(
        nginx_bin: str, tmp_path: Path, upstream: Upstream,
        monkeypatch: pytest.MonkeyPatch) -> None:
    etc = nginx_dir(tmp_path)
    root = tmp_path / "nginx"
    placeholder, port = free_port(), free_port()
    (tmp_path / "placeholder").write_text(f"server {{ listen {placeholder}; return 204; }}\n")
    argv = prefix_nginx(nginx_bin, root, [str(tmp_path / "placeholder"),
                                          f"{etc}/conf.d/*.conf", f"{etc}/sites-enabled/*"])
    kwargs: dict[str, Any] = dict(
        server_name="pool.example", upstream=upstream.address, listen_port=port,
        nginx_dir=etc, check=True, nginx=argv, pid_file=root / "nginx.pid", owner=None,
        group=None)
    include = etc / "snippets" / "multipool.conf"
    available = etc / "sites-available" / "multipool"
    link = etc / "sites-enabled" / "multipool"
    nginx = start_nginx(argv, placeholder, root)
    try:
        # No site before: a rejected one leaves none behind (files and link removed).
        monkeypatch.setattr(site, "render_include", lambda **_: BROKEN)
        plan = site.site_changes(**kwargs)
        for change in plan[:-1]:
            change.apply()
        assert link.is_symlink() and include.read_text() == BROKEN
        with pytest.raises(site.NginxError) as caught:
            plan[-1].apply()
        message = str(caught.value)
        assert 'unknown directive "bogus_directive"' in message  # nginx's own words
        assert f"{include} removed" in message and f"{link} removed" in message
        assert "not reloaded" in message
        assert not include.exists() and not available.exists() and not link.is_symlink()
        assert nginx_test(argv).returncode == 0
        assert reloads(root) == 0

        # A good site, served; then a broken change to it: the previous one stays.
        monkeypatch.undo()
        for change in site.site_changes(**kwargs):
            change.apply()
        assert fetch_when_up(port, "/")[:3:2] == (200, INDEX)
        assert reloads(root) == 1
        good = {path: path.read_bytes() for path in (include, available)}
        monkeypatch.setattr(site, "render_include", lambda **_: BROKEN)
        plan = site.site_changes(**kwargs)
        assert ops(plan) == ["files.file", "nginx.reload"]
        with pytest.raises(site.NginxError, match=f"{include} restored"):
            for change in plan:
                change.apply()
        assert {path: path.read_bytes() for path in good} == good
        assert os.readlink(link) == str(available)
        assert nginx_test(argv).returncode == 0
        assert reloads(root) == 1  # no reload
        assert fetch(port, "/")[:3:2] == (200, INDEX)
        assert nginx.process.poll() is None
    finally:
        stop_nginx(nginx)


# --- certbot's edits survive a re-run ---------------------------------------------------


def test_certbots_tls_lines_survive_init_again(nginx_bin: str, tmp_path: Path,
                                               upstream: Upstream) -> None:
    """The site file edited as `certbot --nginx --redirect` edits it (see
    tests/ops/proxies.py; certbot itself needs a public name and Let's Encrypt, so its
    edit is reproduced, with a self-signed certificate): nginx serves TLS through the
    include, port 80 redirects, and installing again (a new upstream, then subdomain
    routing) keeps every certbot line."""
    etc = nginx_dir(tmp_path)
    root = tmp_path / "nginx"
    http_port, tls_port = free_port(), free_port()
    argv = prefix_nginx(nginx_bin, root, [f"{etc}/conf.d/*.conf", f"{etc}/sites-enabled/*"])
    kwargs: dict[str, Any] = dict(
        server_name="pool.example", upstream=upstream.address, listen_port=http_port,
        nginx_dir=etc, check=True, nginx=argv, pid_file=root / "nginx.pid", owner=None,
        group=None)
    for change in site.site_changes(**kwargs):
        change.apply()
    available = etc / "sites-available" / "multipool"
    cert, key = self_signed(tmp_path / "letsencrypt" / "live" / "pool.example")
    options = tmp_path / "letsencrypt" / "options-ssl-nginx.conf"
    options.write_text("ssl_session_cache shared:le_nginx_SSL:1m;\n"
                       "ssl_protocols TLSv1.2 TLSv1.3;\n")
    certbot_nginx_edit(available, server_name="pool.example", tls_port=tls_port,
                       http_port=http_port, cert=cert, key=key, options=options)
    certbot_lines = [line for line in available.read_text().splitlines()
                     if "managed by Certbot" in line]
    assert len(certbot_lines) == 7
    assert nginx_test(argv).returncode == 0, nginx_test(argv).stderr
    nginx = start_nginx(argv, tls_port, root)
    try:
        status, headers, body = fetch(tls_port, "/", tls=True)
        assert (status, body) == (200, INDEX)
        assert headers["X-Frame-Options"] == "DENY"
        assert upstream.seen[-1]["X-Forwarded-Proto"] == "https"
        assert fetch(tls_port, "/metrics", tls=True)[0] == 403
        status, headers, _ = fetch(http_port, "/static/x.css?v=1")
        assert status == 301
        assert headers["Location"] == "https://pool.example/static/x.css?v=1"

        # init again with the web process moved: the include changes, the site does not.
        with_new_upstream = dict(kwargs)
        from tests.ops.proxies import serve_upstream
        with serve_upstream() as moved:
            with_new_upstream["upstream"] = moved.address
            plan = site.site_changes(**with_new_upstream)
            assert ops(plan) == ["files.file", "nginx.reload"]
            before = available.read_text()
            assert [change.apply() for change in plan][-1] == "reloaded"
            assert available.read_text() == before
            deadline = time.monotonic() + 15
            while not moved.seen and time.monotonic() < deadline:
                fetch(tls_port, "/", tls=True)
                time.sleep(0.05)
            assert moved.seen and moved.seen[-1]["X-Forwarded-Proto"] == "https"

            # And with subdomain routing: only the marked block changes.
            wild = {**with_new_upstream, "routing": "subdomain"}
            plan = site.site_changes(**wild)
            assert [(c.operation, c.target) for c in plan] == [
                ("files.file", str(available)), ("nginx.reload", str(available))]
            assert [change.apply() for change in plan][-1] == "reloaded"
            after = available.read_text().splitlines()
            assert [line for line in after if "managed by Certbot" in line] == certbot_lines
            assert "    server_name pool.example *.pool.example;" in after
            # The block's line changed; certbot's redirect block keeps its own name.
            assert after == before.replace("    server_name pool.example;\n",
                                           "    server_name pool.example *.pool.example;\n",
                                           1).splitlines()
            deadline = time.monotonic() + 15
            while True:
                status, _, body = fetch(tls_port, "/", host="ltc.pool.example", tls=True)
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert (status, body) == (200, INDEX)
            assert moved.seen[-1]["Host"] == "ltc.pool.example"
            assert site.site_changes(**wild) == []
    finally:
        stop_nginx(nginx)


# --- a server whose web server init installs first -----------------------------------------


def test_site_waits_for_the_package_init_installs(tmp_path: Path) -> None:
    """On a fresh server `init` installs nginx in the same plan: the site is one change
    worked out when applied, after the package made /etc/nginx; its values are checked
    when the plan is made."""
    if os.geteuid() != 0:
        pytest.skip("the system's sites are root's: needs root (CI is root)")
    def config(public_host: str) -> Any:
        data = tomllib.loads(f'[server]\nroot = "{tmp_path}"\npublic_host = "{public_host}"\n')
        return parse_server_config(data, "multipool.toml")

    etc = tmp_path / "etc-nginx"  # not there yet: nginx is not installed
    change = web.pending_site_change(config("pool.example"), nginx_dir=etc,
                                     apache_dir=tmp_path / "no-apache")
    assert (change.operation, change.target) == ("web.site", "pool.example")
    assert "once nginx is installed" in change.summary
    with pytest.raises(ConfigError) as caught:
        web.pending_site_change(config("pool.example;"), nginx_dir=etc,
                                apache_dir=tmp_path / "no-apache")
    assert caught.value.key == "server.public_host"
    for sub in ("sites-available", "sites-enabled"):  # what apt-get install nginx makes
        (etc / sub).mkdir(parents=True)
    change.apply()
    site_file = etc / "sites-available" / "multipool"
    assert "    server_name pool.example;" in site_file.read_text().splitlines()
    assert "proxy_pass http://127.0.0.1:8080;" in \
        (etc / "snippets" / "multipool.conf").read_text()
    assert os.readlink(etc / "sites-enabled" / "multipool") == str(site_file)
    assert web.site_changes(config("pool.example"), nginx_dir=etc,
                            apache_dir=tmp_path / "no-apache") == []
