"""What the nginx and Apache tests share: a tiny upstream that records what the proxy
tells it, HTTP(S) requests to loopback, a self-signed certificate, certbot's edits of a
site file done as certbot does them, and a real `multipool web serve` with what it must
answer through either site."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import multipool.web
from multipool.devnet import free_port

INDEX = b"<!doctype html><title>pools</title><h1>All pools</h1>\n" + b"<p>pool</p>\n" * 30
CSS = b"body { color: #333; }\n" * 40  # over the servers' minimum length for compression
API = json.dumps({"pools": [{"prefix": "ltc", "hashrate": 1.5e9}] * 30}).encode()
METRICS = b"# HELP multipool_up 1\nmultipool_up 1\n"
# What the web app itself sends on its pages: the site must not add its own beside them.
APP_HEADERS = {"X-Frame-Options": "SAMEORIGIN", "Referrer-Policy": "no-referrer",
               "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'; style-src 'self'"}
ROUTES = {"/": (INDEX, "text/html"), "/own-headers": (INDEX, "text/html"),
          "/static/x.css": (CSS, "text/css"),
          "/api/pools": (API, "application/json"), "/metrics": (METRICS, "text/plain"),
          "/metrics/x": (METRICS, "text/plain")}
# urllib would use a proxy from the environment; these requests go to loopback only.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass
class Upstream:
    """A stand-in for the web process: answers ROUTES, records each request's headers."""

    port: int
    seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [request["path"] for request in self.seen]


@contextmanager
def serve_upstream() -> Iterator[Upstream]:
    record = Upstream(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            record.seen.append({"path": self.path, **dict(self.headers.items())})
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body, kind = ROUTES.get(self.path, (b"not found\n", "text/plain"))
            self.send_response(200 if self.path in ROUTES else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if self.path == "/own-headers":
                for name, value in APP_HEADERS.items():
                    self.send_header(name, value)
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
          headers: dict[str, str] | None = None, data: bytes | None = None,
          tls: bool = False) -> tuple[int, Message, bytes]:
    """One request to loopback; redirects are returned, not followed. The headers are
    looked up without regard to case (uvicorn sends them in lower case)."""
    scheme = "https" if tls else "http"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", data=data,
                                     headers={"Host": host, **(headers or {})})
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}),
                                                  NoRedirect()]
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def fetch_when_up(port: int, path: str = "/", timeout: float = 15, **kwargs: object
                  ) -> tuple[int, Message, bytes]:
    """fetch(), retried while nothing listens yet (a server taking a reload)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fetch(port, path, **kwargs)  # type: ignore[arg-type]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path,
                  name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text() if log.exists() else "(no log)"
            pytest.fail(f"{name} exited with {process.returncode}:\n{text}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{name} does not listen on {port}:\n{log.read_text()}")


def self_signed(directory: Path, name: str = "pool.example") -> tuple[Path, Path]:
    """A certificate and key for ``name`` (openssl), as certbot would leave in live/."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def certbot_nginx_edit(site: Path, *, server_name: str, tls_port: int, http_port: int,
                       cert: Path, key: Path, options: Path) -> None:
    """Edit an nginx site file as `certbot --nginx -d NAME --redirect` does (certbot
    2.x, nginx plugin): the port 80 listeners leave the first server block, the 443
    listener, the certificate and certbot's options go to its end, each line marked
    `# managed by Certbot`, and a new server block answers port 80 with a redirect."""
    lines = site.read_text().splitlines()
    lines = [line for line in lines if line.strip() not in (
        f"listen {http_port};", f"listen [::]:{http_port};")]
    close = max(n for n, line in enumerate(lines) if line.strip() == "}")
    tls = [
        "",
        f"    listen [::]:{tls_port} ssl ipv6only=on; # managed by Certbot",
        f"    listen {tls_port} ssl; # managed by Certbot",
        f"    ssl_certificate {cert}; # managed by Certbot",
        f"    ssl_certificate_key {key}; # managed by Certbot",
        f"    include {options}; # managed by Certbot",
        "",
    ]
    redirect = [
        "server {",
        f"    if ($host = {server_name}) {{",
        "        return 301 https://$host$request_uri;",
        "    } # managed by Certbot",
        "",
        "",
        f"    listen {http_port};",
        f"    listen [::]:{http_port};",
        f"    server_name {server_name};",
        "    return 404; # managed by Certbot",
        "",
        "",
        "}",
    ]
    site.write_text("\n".join([*lines[:close], *tls, *lines[close:], *redirect]) + "\n")


def certbot_apache_edit(site: Path, *, server_name: str, tls_port: int, http_port: int,
                        cert: Path, key: Path, options: Path) -> Path:
    """Edit an Apache site as `certbot --apache -d NAME --redirect` does (certbot 2.x,
    apache plugin): the virtual host is copied into NAME-le-ssl.conf for port 443 inside
    `<IfModule mod_ssl.c>` with the certificate and certbot's options, and a rewrite to
    https is added at the end of the original. Returns the new file (not enabled yet:
    certbot runs a2ensite for it, as the caller does)."""
    text = site.read_text()
    lines = text.splitlines()
    begin = next(n for n, line in enumerate(lines) if line.startswith("<VirtualHost"))
    end = next(n for n, line in enumerate(lines) if line.startswith("</VirtualHost>"))
    body = lines[begin + 1:end]
    copy = site.with_name(site.name.replace(".conf", "-le-ssl.conf"))
    copy.write_text("\n".join([
        "<IfModule mod_ssl.c>",
        f"<VirtualHost *:{tls_port}>",
        *body,
        "",
        f"SSLCertificateFile {cert}",
        f"SSLCertificateKeyFile {key}",
        f"Include {options}",
        "</VirtualHost>",
        "</IfModule>",
    ]) + "\n")
    rewrite = [
        "RewriteEngine on",
        f"RewriteCond %{{SERVER_NAME}} ={server_name}",
        "RewriteRule ^ https://%{SERVER_NAME}%{REQUEST_URI} [END,NE,R=permanent]",
    ]
    site.write_text("\n".join([*lines[:end], *rewrite, *lines[end:]]) + "\n")
    return copy


@dataclass
class WebProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def web_serve(root: Path, *, public_host: str = "pool.example",
              routing: str = "path") -> Iterator[WebProcess]:
    """A real `multipool web serve` on a free loopback port over a server tree with one
    pool, ``ltc``, whose engine wrote a fresh status (its page is the one a subdomain
    ``ltc.<public_host>`` must reach)."""
    (root / "web" / "ltc").mkdir(parents=True, exist_ok=True)
    (root / "web" / "ltc" / "status.json").write_text(json.dumps({
        "version": 1, "updated": datetime.now(UTC).isoformat(),
        "coin": {"prefix": "ltc", "name": "litecoin", "symbol": "LTC",
                 "algorithm": "scrypt", "network": "regtest"},
        "stratum": {"open": True, "ports": []}}))
    port = free_port()
    log = root / "web.log"
    argv = [sys.executable, "-m", "multipool.cli", "web", "serve", "--root", str(root),
            "--listen", f"127.0.0.1:{port}", "--public-host", public_host, "--routing",
            routing, "--metrics-listen", ""]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    web = WebProcess(process, port, log)
    try:
        wait_for_port(port, process, log, "multipool web serve")
        yield web
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def check_web_process_behind(port: int, routing: str) -> Message:
    """Given the port of a site in front of :func:`web_serve`'s process, check what it
    answers through the site: its page compressed (with subdomain routing, the pool's
    own host gets the pool's page, the public host the index), each security header
    once (the app's where it sends one, else the site's), its stylesheet cached and
    compressed, its health check, and no /metrics. Return the stylesheet's headers (each
    server writes its caching its own way)."""
    hosts = ["pool.example"] + (["ltc.pool.example"] if routing == "subdomain" else [])
    for host in hosts:
        status, headers, body = fetch(port, "/", host=host,
                                      headers={"Accept-Encoding": "gzip"})
        assert status == 200, (host, body[:300])
        assert headers["Content-Encoding"] == "gzip"
        page = gzip.decompress(body)
        assert b"<html" in page.lower()
        assert (b'class="crumbs"' in page) == host.startswith("ltc."), host
        assert b'id="pool-ltc"' in page
        for header in ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy",
                       "Content-Security-Policy"):
            assert len(headers.get_all(header) or []) == 1, (host, header)
        assert headers["X-Frame-Options"] == "DENY"
    status, headers, body = fetch(port, "/static/style.css",
                                  headers={"Accept-Encoding": "gzip"})
    assert status == 200 and "max-age=604800" in headers["Cache-Control"]
    assert headers["Content-Encoding"] == "gzip"
    stylesheet = Path(multipool.web.__file__).parent / "static" / "style.css"
    assert gzip.decompress(body) == stylesheet.read_bytes()
    assert fetch(port, "/healthz")[0] == 200
    assert fetch(port, "/metrics")[0] == 403
    return headers


def which(program: str) -> str | None:
    return shutil.which(program, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def assert_security_headers(headers: Message, *, own: bool = False) -> None:
    """Each security header once: the site's, or with ``own`` the app's (APP_HEADERS)."""
    wanted = APP_HEADERS if own else {
        "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                                   "base-uri 'self'; form-action 'self'"}
    for name, value in wanted.items():
        assert headers.get_all(name) == [value], (name, headers.get_all(name))


def check_forwarding(port: int, upstream: Upstream) -> Message:
    """Through the proxy listening on ``port`` (server name pool.example): the front page
    is the app's, with the security headers; where the app sets its own, each comes
    once, the app's value. The app learns the host, the client's address (as
    X-Forwarded-For and X-Real-IP) and the scheme, and a client's own X-Forwarded-For or
    X-Real-IP never reaches it. Return the front page's headers."""
    status, front, body = fetch(port, "/")
    assert (status, body) == (200, INDEX)
    assert_security_headers(front)
    status, headers, _ = fetch(port, "/own-headers")
    assert status == 200
    assert_security_headers(headers, own=True)
    seen = upstream.seen[-1]
    assert seen["Host"] == "pool.example"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Real-IP"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    fetch(port, "/", headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "1.2.3.4"})
    # By name in any case: a proxy that replaces a header's value may keep the client's
    # spelling of its name (urllib sends "X-real-ip").
    spoofed = {name.lower(): value for name, value in upstream.seen[-1].items()}
    assert spoofed["x-forwarded-for"] == "127.0.0.1"
    assert spoofed["x-real-ip"] == "127.0.0.1"
    return front
