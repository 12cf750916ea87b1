"""Async JSON-RPC client for Bitcoin-family coin daemons (bitcoind, litecoind, ...).

One explicit method per RPC, so type checkers see them all; they share :meth:`_call`,
which retries what is worth retrying (warm-up, a full work queue, connection trouble)
with capped exponential backoff and raises :class:`DaemonError` only for real errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from multipool.errors import ConfigError, PoolError

RPC_IN_WARMUP = -28


class DaemonError(PoolError):
    """The daemon answered a call with an error (``code``/``message`` as it sent them)."""

    def __init__(self, message: str, *, code: int | None = None, method: str | None = None):
        self.code = code
        self.message = message
        self.method = method
        text = f"{method}: {message}" if method else message
        super().__init__(f"{text} (code {code})" if code is not None else text)


class DaemonAuthError(DaemonError):
    """The daemon refused our credentials (HTTP 401) or our address (HTTP 403)."""


class DaemonUnavailable(DaemonError):
    """The daemon could not be reached, or stayed in warm-up, for the whole retry budget."""


class DaemonOutcomeUnknown(DaemonError):
    """A call that must not run twice (a payment) was sent, but its answer was lost: the
    daemon may or may not have run it."""


class _Retryable(Exception):
    """A failure worth retrying; ``sent`` is True when the daemon may have run the call."""

    def __init__(self, reason: str, *, sent: bool):
        super().__init__(reason)
        self.sent = sent


class _Unauthorized(Exception):
    """HTTP 401: the caller decides between re-reading the cookie and giving up."""


def _basic_auth(user: str, password: str) -> str:
    """Given RPC credentials, return the Authorization header value (aiohttp's BasicAuth
    is deprecated from 3.14 on; this works with every version)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class DaemonClient:
    """A coin daemon's RPC interface; use as ``async with DaemonClient(url, ...) as d:``."""

    FIRST_DELAY = 0.1  # backoff starts fast: a restarting daemon is back in about 0.3 s
    MAX_DELAY = 5.0
    WARN_INTERVAL = 60.0  # one warning a minute while the daemon stays unreachable
    # One TCP connection per call, none kept alive. On a kept-alive connection every
    # answer larger than a few TCP segments waited ~40 ms for a delayed ACK (measured
    # against litecoind 0.21: a 58 KB listtransactions took 52 ms kept alive, 10 ms on a
    # fresh connection, whose ACKs Linux sends at once); a 40 KB getblocktemplate after
    # a block is exactly such an answer. A fresh loopback connection costs ~0.3 ms.
    # It also means litecoind never waits for our idle sockets when it shuts down, and no
    # socket can be closed by its -rpcservertimeout just as a no-retry call goes out.

    def __init__(self, url: str, *, user: str | None = None, password: str | None = None,
                 cookie_file: str | Path | None = None, wallet: str | None = None,
                 timeout: float = 30.0, longpoll_timeout: float = 3600.0,
                 max_concurrency: int = 4, retry_for: float | None = None,
                 logger: logging.Logger | None = None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"must be an http(s) URL with a host, got {parts.scheme}://...",
                              key="rpc_url")
        # Credentials in the URL are accepted but never kept in it: self.url gets logged.
        user = user if user is not None else parts.username
        password = password if password is not None else parts.password
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
        netloc = host + (f":{parts.port}" if parts.port else "")
        self.url = urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
        self.wallet_url = (f"{self.url.rstrip('/')}/wallet/{quote(wallet, safe='')}"
                           if wallet is not None else None)
        if (user is None) != (password is None):
            raise ConfigError("give both an RPC user and password, or neither", key="rpc_user")
        self._login = user
        self._auth = _basic_auth(user, password or "") if user is not None else None
        self._cookie_file = Path(cookie_file) if cookie_file else None
        self.timeout = timeout
        self.longpoll_timeout = longpoll_timeout
        self.retry_for = retry_for
        self.logger = logger or logging.getLogger("multipool.daemon")
        # Sized to the daemon's RPC threads (-rpcthreads, 4 by default): more would queue.
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._failing_since: float | None = None
        self._last_warning: float | None = None

    def __repr__(self) -> str:
        who = f"cookie_file={str(self._cookie_file)!r}" if self._cookie_file else (
            f"user={self._login!r}" if self._login is not None else "no auth")
        return f"DaemonClient({self.url!r}, {who})"

    async def __aenter__(self) -> DaemonClient:
        connector = aiohttp.TCPConnector(force_close=True)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, params: list[Any], *, timeout: float | None = None,
                    wallet: bool = False, idempotent: bool = True, longpoll: bool = False) -> Any:
        """Given an RPC name and its params, return the daemon's result, retrying
        warm-up and connection failures until ``retry_for`` runs out."""
        url = self.wallet_url if wallet and self.wallet_url else self.url
        started, delay = time.monotonic(), self.FIRST_DELAY
        while True:
            try:
                try:
                    result = await self._post(url, method, params, timeout or self.timeout,
                                              longpoll)
                except _Unauthorized:
                    # The cookie is rewritten on every daemon restart: read it again, and
                    # try again only if it changed.
                    if self._cookie_file is not None and self._reload_cookie():
                        continue
                    source = (f"the cookie file {self._cookie_file}" if self._cookie_file
                              else "rpc_user/rpc_password")
                    raise DaemonAuthError(f"the daemon at {self.url} rejected the credentials "
                                          f"(HTTP 401): check {source}", method=method) from None
            except _Retryable as exc:
                if exc.sent and not idempotent:
                    raise DaemonOutcomeUnknown(
                        f"{exc}; the daemon may have executed the call: check before "
                        "trying again", method=method) from exc
                elapsed = time.monotonic() - started
                if self.retry_for is not None and elapsed >= self.retry_for:
                    raise DaemonUnavailable(f"daemon at {self.url} not available after "
                                            f"{elapsed:.1f}s: {exc}", method=method) from exc
                self._note_failure(method, exc)
                if self.retry_for is not None:
                    delay = min(delay, self.retry_for - elapsed)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.MAX_DELAY)
                continue
            if self._failing_since is not None:
                self.logger.info("connection to daemon restored (%s, down %.1fs)", self.url,
                                 time.monotonic() - self._failing_since)
                self._failing_since = self._last_warning = None
            return result

    async def _post(self, url: str, method: str, params: list[Any], timeout: float,
                    longpoll: bool) -> Any:
        """Given one request, return its result or raise what :meth:`_call` sorts out."""
        if self._session is None:
            raise RuntimeError("use DaemonClient in 'async with'")
        if self._auth is None and self._cookie_file is not None:
            self._reload_cookie()
        payload = {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": params}
        # A long poll waits for the next block: it must neither hit the normal timeout
        # nor hold a semaphore slot that submitblock may need meanwhile.
        limit = (aiohttp.ClientTimeout(total=self.longpoll_timeout, sock_connect=timeout)
                 if longpoll else aiohttp.ClientTimeout(total=timeout))
        try:
            async with contextlib.nullcontext() if longpoll else self._semaphore:
                headers = {"Authorization": self._auth} if self._auth else None
                async with self._session.post(url, json=payload, headers=headers,
                                              timeout=limit) as response:
                    status, body = response.status, await response.read()
        except aiohttp.ClientConnectorError as exc:  # nothing was sent
            raise _Retryable(f"cannot connect: {exc.os_error or exc}", sent=False) from exc
        except TimeoutError as exc:
            raise _Retryable(f"no answer within {timeout:g}s", sent=True) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _Retryable(f"connection lost: {exc!r}", sent=True) from exc
        if status == 401:
            raise _Unauthorized
        if status == 403:
            raise DaemonAuthError(f"the daemon at {self.url} refused this client (HTTP 403): "
                                  "check its rpcallowip", method=method)
        if status == 503:  # bitcoind's work queue is full: the call was not run
            raise _Retryable("daemon work queue full (HTTP 503)", sent=False)
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or not ("result" in reply or "error" in reply):
            raise DaemonError(f"HTTP {status} from {self.url} is not a JSON-RPC reply: "
                              f"{body[:100]!r}", method=method)
        error = reply.get("error")
        if error:
            code = error.get("code") if isinstance(error, dict) else None
            message = str(error.get("message", error) if isinstance(error, dict) else error)
            if code == RPC_IN_WARMUP:
                raise _Retryable(f"warming up: {message}", sent=False)
            raise DaemonError(message, code=code, method=method)
        return reply.get("result")

    def _reload_cookie(self) -> bool:
        """Read ``user:password`` from the cookie file; return True when it changed."""
        assert self._cookie_file is not None
        try:
            text = self._cookie_file.read_text().strip()
        except OSError as exc:  # the daemon writes it when it starts: not up yet
            raise _Retryable(f"cannot read cookie file {self._cookie_file}: {exc.strerror}",
                             sent=False) from exc
        user, colon, password = text.partition(":")
        if not colon:
            raise DaemonAuthError(f"cookie file {self._cookie_file} does not hold user:password")
        auth = _basic_auth(user, password)
        changed = auth != self._auth
        self._login, self._auth = user, auth
        return changed

    def _note_failure(self, method: str, exc: _Retryable) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if self._last_warning is None or now - self._last_warning >= self.WARN_INTERVAL:
            self._last_warning = now
            self.logger.warning("daemon %s: %s (during %s); retrying", self.url, exc, method)

    # --- mining ---------------------------------------------------------------------

    async def getblocktemplate(self, rules: list[str], longpollid: str | None = None) -> Any:
        """Given the softfork rules (Litecoin: ["mweb", "segwit"]) and optionally the last
        template's longpollid, return a template; with a longpollid, once the tip changes."""
        request: dict[str, Any] = {"rules": rules}
        if longpollid is not None:
            request["longpollid"] = longpollid
        return await self._call("getblocktemplate", [request], longpoll=longpollid is not None)

    async def submitblock(self, block_hex: str) -> str | None:
        """Given a serialized block, return None when accepted, else the reason string."""
        return await self._call("submitblock", [block_hex])

    async def getmininginfo(self) -> dict[str, Any]:
        """Return difficulty, network hash rate and the like."""
        return await self._call("getmininginfo", [])

    async def generatetoaddress(self, n: int, address: str) -> list[str]:
        """Given a count and an address, mine that many blocks (regtest); return their hashes."""
        return await self._call("generatetoaddress", [n, address], idempotent=False)

    # --- chain ----------------------------------------------------------------------

    async def getblockheader(self, hash_hex: str, verbose: bool = True) -> Any:
        """Given a block hash, return its header as a dict (or hex when not verbose)."""
        return await self._call("getblockheader", [hash_hex, verbose])

    async def getblockhash(self, height: int) -> str:
        """Given a height, return the hash of the best chain's block there."""
        return await self._call("getblockhash", [height])

    async def getblockcount(self) -> int:
        """Return the height of the best chain."""
        return await self._call("getblockcount", [])

    async def getbestblockhash(self) -> str:
        """Return the hash of the best chain's tip."""
        return await self._call("getbestblockhash", [])

    async def getblockchaininfo(self) -> dict[str, Any]:
        """Return chain name, height, initial block download state and more."""
        return await self._call("getblockchaininfo", [])

    async def getblock(self, hash_hex: str, verbosity: int = 1) -> Any:
        """Given a block hash, return hex (0), a dict with txids (1) or with txs (2)."""
        return await self._call("getblock", [hash_hex, verbosity])

    async def getrawmempool(self) -> list[str]:
        """Return the txids in the mempool."""
        return await self._call("getrawmempool", [])

    # --- network --------------------------------------------------------------------

    async def getnetworkinfo(self) -> dict[str, Any]:
        """Return version, subversion, connection counts and relay fee."""
        return await self._call("getnetworkinfo", [])

    async def getpeerinfo(self) -> list[dict[str, Any]]:
        """Return one dict per connected peer."""
        return await self._call("getpeerinfo", [])

    async def getconnectioncount(self) -> int:
        """Return the number of peer connections."""
        return await self._call("getconnectioncount", [])

    async def addnode(self, node: str, command: str) -> None:
        """Given "host:port" and "add", "remove" or "onetry", change the peer list."""
        await self._call("addnode", [node, command])

    async def stop(self) -> str:
        """Ask the daemon to shut down; return its farewell message."""
        return await self._call("stop", [], idempotent=False)

    # --- addresses and wallet -------------------------------------------------------

    async def validateaddress(self, address: str) -> dict[str, Any]:
        """Given an address, return {"isvalid": ..., "scriptPubKey": ...}."""
        return await self._call("validateaddress", [address])

    async def getnewaddress(self, label: str = "", address_type: str | None = None) -> str:
        """Given a label and optionally a type ("legacy", "bech32", "mweb"...), return a
        new address of the client's wallet."""
        params: list[Any] = [label] if address_type is None else [label, address_type]
        return await self._call("getnewaddress", params, wallet=True)

    async def sendtoaddress(self, address: str, amount: Decimal | float) -> str:
        """Given an address and an amount in coins, pay it from the wallet; return the txid.
        Never retried once sent: a retry could pay twice."""
        # A Decimal goes as a string, which the daemon parses exactly (no float rounding).
        value = format(amount, "f") if isinstance(amount, Decimal) else amount
        return await self._call("sendtoaddress", [address, value], wallet=True,
                                idempotent=False)

    async def sendmany(self, amounts: dict[str, Decimal], comment: str) -> str:
        """Given {address: coins} and a wallet comment, pay them all in one transaction;
        return its txid. Never retried once sent; :class:`DaemonOutcomeUnknown` when the
        answer was lost, so the caller must look for the comment in the wallet."""
        values = {address: format(amount, "f") for address, amount in amounts.items()}
        return await self._call("sendmany", ["", values, 1, comment], wallet=True,
                                idempotent=False)

    async def listtransactions(self, count: int = 100, skip: int = 0) -> list[dict[str, Any]]:
        """Return ``count`` wallet transaction entries, newest last, after skipping the
        ``skip`` newest; each carries the wallet comment of its send, if any."""
        return await self._call("listtransactions", ["*", count, skip], wallet=True)

    async def gettransaction(self, txid: str) -> dict[str, Any]:
        """Given a txid of the wallet, return its details (fee, confirmations, comment)."""
        return await self._call("gettransaction", [txid], wallet=True)

    async def getbalances(self) -> dict[str, Any]:
        """Return the wallet's balances: mine.trusted is what can be spent now, without
        immature coinbases or unconfirmed coins from others."""
        return await self._call("getbalances", [], wallet=True)

    # --- wallets (node-level calls, not sent to the wallet URL) --------------------------

    async def listwallets(self) -> list[str]:
        """Return the names of the wallets the daemon has loaded."""
        return await self._call("listwallets", [])

    async def loadwallet(self, name: str) -> dict[str, Any]:
        """Given a wallet name in the datadir, load it; -18 when there is none."""
        return await self._call("loadwallet", [name], idempotent=False)

    async def createwallet(self, name: str) -> dict[str, Any]:
        """Given a new wallet name, create and load it; -4 when it exists already."""
        return await self._call("createwallet", [name], idempotent=False)

    async def backupwallet(self, destination: str | Path) -> None:
        """Given a path on the daemon's host that the daemon may write, copy the client's
        wallet there, consistent while the daemon runs (an online backup). The daemon
        writes the file itself, as its own user; -4 when it cannot."""
        await self._call("backupwallet", [str(destination)], wallet=True)
