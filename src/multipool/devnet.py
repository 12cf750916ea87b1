"""Real litecoind regtest nodes for the demo, tests and benchmarks.

``/usr/bin/litecoind`` on Debian is a wrapper that writes ``~/.litecoin``: the real binary
in ``/usr/lib/litecoin`` is run instead, always with its own ``-datadir``.

    with RegtestNetwork(tmp_path, nodes=2) as net:
        net.mine(1)
        net.sync()
        net.nodes[0].rpc("getblocktemplate", {"rules": ["mweb", "segwit"]})
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import http.client
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from multipool.chain.rpc import RPC_IN_WARMUP, DaemonAuthError, DaemonError
from multipool.config import CoinConfig, parse_coin_config
from multipool.tomlwrite import toml_document

REAL_BINARY = "/usr/lib/litecoin/litecoind"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# Nodes still running, killed at interpreter exit should a caller forget to stop them.
_RUNNING: set[RegtestNode] = set()


@atexit.register
def _kill_leftovers() -> None:
    for node in list(_RUNNING):
        node.kill()


def find_litecoind() -> str | None:
    """Return the path of the real litecoind ($MULTIPOOL_LITECOIND first), or None."""
    for candidate in (os.environ.get("MULTIPOOL_LITECOIND"), REAL_BINARY):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RegtestNode:
    """One litecoind in regtest mode, in ``<root>/node<index>``, on free local ports."""

    def __init__(self, root: str | Path, index: int = 0, *, binary: str | None = None,
                 extra_args: tuple[str, ...] = ()):
        found = binary or find_litecoind()
        if found is None:
            raise FileNotFoundError(f"litecoind not found at {REAL_BINARY}: install the "
                                    "litecoind package or set MULTIPOOL_LITECOIND")
        self.binary = found
        self.index = index
        self.datadir = Path(root) / f"node{index}"
        self.extra_args = extra_args
        self.rpc_user = f"test{index}"
        self.rpc_password = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self._ever_ready = False
        self._choose_ports()

    def __repr__(self) -> str:
        return f"RegtestNode({self.index}, {self.rpc_url})"

    def _choose_ports(self) -> None:
        self.p2p_port, self.rpc_port = free_port(), free_port()
        # litecoind 0.21 binds an onion-service target on 127.0.0.1:19444 unless told a
        # port, listenonion=0 or not: pinned, so that no node here takes that port from a
        # pool's daemon (or from another node) on the same host.
        self.onion_port = free_port()
        self.rpc_url = f"http://127.0.0.1:{self.rpc_port}/"
        self.datadir.mkdir(parents=True, exist_ok=True)
        # Every option is a real 0.21.2 option: unknown ones would be warned about.
        options = [
            ("rpcbind", "127.0.0.1"), ("rpcallowip", "127.0.0.1"),
            ("port", self.p2p_port), ("rpcport", self.rpc_port),
            ("rpcuser", self.rpc_user), ("rpcpassword", self.rpc_password),
            ("listen", 1), ("bind", f"127.0.0.1:{self.p2p_port}"),
            ("bind", f"127.0.0.1:{self.onion_port}=onion"),
            ("server", 1), ("fallbackfee", "0.0001"),
            ("txindex", 0), ("printtoconsole", 0), ("dnsseed", 0), ("discover", 0),
            ("listenonion", 0), ("upnp", 0),
            # createwallet fills the key pool: 1000 keys take ~1.6 s, 10 take ~0.1 s.
            ("keypool", 10),
        ]
        lines = ["regtest=1", "[regtest]", *(f"{k}={v}" for k, v in options)]
        (self.datadir / "litecoin.conf").write_text("\n".join(lines) + "\n")

    @property
    def p2p_address(self) -> str:
        return f"127.0.0.1:{self.p2p_port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Launch the daemon without waiting for it (see :meth:`wait_ready`)."""
        if self.running():
            return
        with open(self.datadir / "stderr.log", "ab") as stderr:  # init errors go here
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [self.binary, f"-datadir={self.datadir}", *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        _RUNNING.add(self)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll RPC until it answers; -28 (warming up) and refused connections mean "not
        yet". Raise RuntimeError with the log tail if the daemon exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                _RUNNING.discard(self)
                raise RuntimeError(f"litecoind node{self.index} exited with code "
                                   f"{self.process.returncode}:\n{self.log_tail()}")
            try:
                self.rpc("getblockcount", timeout=5)
                return
            except DaemonError as exc:
                if exc.code != RPC_IN_WARMUP:
                    raise
            except (OSError, http.client.HTTPException):
                pass  # not listening yet
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"litecoind node{self.index} gave no RPC answer in "
                                   f"{timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the daemon and return once RPC answers."""
        self.spawn()
        try:
            self.wait_ready(timeout)
        except RuntimeError:
            # Another process took a port between free_port() and the bind: new ports,
            # once, and only before the first start (a restart must keep its ports).
            tail = self.log_tail(5)
            if self._ever_ready or not ("Unable to bind" in tail or "HTTP server" in tail):
                raise
            self._choose_ports()
            self.spawn()
            self.wait_ready(timeout)
        self._ever_ready = True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the daemon through RPC and wait for it to exit; kill it after ``timeout``."""
        if not self.running():
            _RUNNING.discard(self)
            return
        assert self.process is not None
        with contextlib.suppress(DaemonError, OSError, http.client.HTTPException):
            self.rpc("stop", timeout=5)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _RUNNING.discard(self)

    def kill(self) -> None:
        """SIGKILL the daemon (a crash, as far as the chain state is concerned)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        _RUNNING.discard(self)

    def restart(self) -> None:
        """Stop and start again, on the same ports and datadir."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        """Return the end of debug.log and of the captured stderr."""
        tail = []
        for path in (self.datadir / "regtest" / "debug.log", self.datadir / "stderr.log"):
            with contextlib.suppress(OSError):
                tail += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(tail)

    def rpc(self, method: str, *params: Any, wallet: str | None = None,
            timeout: float = 60.0) -> Any:
        """Given a method and its params, call the daemon and return the result
        (synchronous, for test set-up); raise DaemonError with the daemon's code."""
        url = self.rpc_url + (f"wallet/{wallet}" if wallet is not None else "")
        body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method,
                           "params": list(params)}).encode()
        token = base64.b64encode(f"{self.rpc_user}:{self.rpc_password}".encode()).decode()
        request = urllib.request.Request(url, data=body, headers={  # noqa: S310 - our http URL
            "Authorization": f"Basic {token}", "Content-Type": "application/json"})
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                reply = json.load(response)
        except urllib.error.HTTPError as exc:  # RPC errors come as HTTP 500 + JSON
            if exc.code == 401:
                raise DaemonAuthError("HTTP 401: wrong RPC credentials", method=method) from None
            try:
                reply = json.load(exc)
            except ValueError:
                raise DaemonError(f"HTTP {exc.code}", method=method) from None
        if reply.get("error"):
            raise DaemonError(reply["error"]["message"], code=reply["error"]["code"],
                              method=method)
        return reply["result"]


# No proxy: an http_proxy in the environment must not capture 127.0.0.1 calls.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RegtestNetwork:
    """N regtest nodes joined to node 0, with a wallet ``pool`` on node 0.

    A context manager: every node is stopped on exit, also when starting failed.
    """

    def __init__(self, root: str | Path, nodes: int = 2, *, wallet: str = "pool",
                 binary: str | None = None):
        self.root = Path(root)
        self.wallet = wallet
        self.nodes = [RegtestNode(self.root, i, binary=binary) for i in range(nodes)]

    def __enter__(self) -> RegtestNetwork:
        try:
            for node in self.nodes:  # launch them all first: they warm up in parallel
                node.spawn()
            for node in self.nodes:
                node.start()
            self.connect()
            # load_on_startup (7th argument) keeps the wallet loaded across restarts.
            self.nodes[0].rpc("createwallet", self.wallet, False, False, "", False, False,
                              True)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every node; one that fails to stop does not keep the others running."""
        errors = []
        for node in self.nodes:
            try:
                node.stop()
            except (OSError, subprocess.SubprocessError) as exc:
                node.kill()
                errors.append(exc)
        if errors:
            raise errors[0]

    def connect(self, timeout: float = 30.0) -> None:
        """Join every node to node 0 (addnode onetry) and wait until each has a peer
        whose version handshake is done."""
        for node in self.nodes[1:]:
            node.rpc("addnode", self.nodes[0].p2p_address, "onetry")
        deadline = time.monotonic() + timeout
        for node in self.nodes if len(self.nodes) > 1 else []:
            while not any(peer.get("version", 0) > 0 for peer in node.rpc("getpeerinfo")):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node{node.index} has no peer after {timeout:.0f}s")
                time.sleep(0.05)

    def mine(self, n: int = 1, address: str | None = None) -> list[str]:
        """Mine ``n`` blocks on node 0 (to a new pool-wallet address by default); return
        their hashes. Call :meth:`sync` to wait for the other nodes."""
        node = self.nodes[0]
        if address is None:
            address = node.rpc("getnewaddress", wallet=self.wallet)
        return node.rpc("generatetoaddress", n, address)

    def sync(self, timeout: float = 30.0) -> str:
        """Wait until every node has the same best block; return its hash."""
        deadline = time.monotonic() + timeout
        while True:
            tips = {node.rpc("getbestblockhash") for node in self.nodes}
            if len(tips) == 1:
                return tips.pop()
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes did not agree on a tip in {timeout:.0f}s: {tips}")
            time.sleep(0.05)


def regtest_coin_data(node: RegtestNode, *, address: str, port: int, difficulty: float,
                      pool_tag: str = "/multipool/", **pool: Any) -> dict[str, Any]:
    """Given a running node, a pool address of its wallet and a stratum port, return the
    coin file contents (as parsed TOML) of a litecoin regtest pool on that node, at a
    fixed difficulty; keyword arguments go into its ``[pool]`` table."""
    return {
        "coin": {"name": "litecoin", "prefix": "ltc", "symbol": "LTC",
                 "algorithm": "scrypt", "network": "regtest"},
        "daemon": {"rpc_url": node.rpc_url, "rpc_user": node.rpc_user,
                   "rpc_password": node.rpc_password, "wallet": "pool"},
        "stratum": {"host": "127.0.0.1", "pool_tag": pool_tag,
                    "ports": [{"port": port, "difficulty": difficulty, "vardiff": False}]},
        "pool": {"address": address, **pool},
    }


def regtest_coin_config(node: RegtestNode, *, address: str, port: int, difficulty: float,
                        pool_tag: str = "/multipool/", name: str = "regtest coin",
                        **pool: Any) -> CoinConfig:
    """The validated :class:`CoinConfig` of :func:`regtest_coin_data`."""
    return parse_coin_config(regtest_coin_data(node, address=address, port=port,
                                               difficulty=difficulty, pool_tag=pool_tag,
                                               **pool), name)


def write_coin_file(path: str | Path, data: dict[str, Any]) -> Path:
    """Write coin file contents (tables of plain values, as :func:`regtest_coin_data`
    returns) as TOML; return the path."""
    path = Path(path)
    path.write_text(toml_document(data), encoding="utf-8")
    return path
