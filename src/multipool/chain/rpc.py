"""Async JSON-RPC client for Bitcoin-family coin daemons (bitcoind, litecoind, ...).

One explicit method per RPC, so type checkers see them all; they share :meth:`_call`,
which retries what is worth retrying (warm-up, a full work queue, connection trouble)
with capped exponential backoff and raises :class:`DaemonError` only for real errors.

Amounts are exact both ways: replies are parsed with ``parse_float=Decimal`` (a daemon's
``0.1`` is ``Decimal("0.1")``, never the float nearest to it), and a Decimal in the
params goes out as a JSON string, which the daemons parse exactly. A caller that wants a
float (difficulty, verification progress) converts it itself.

A caller may bound every retry of the calls it makes with :meth:`DaemonClient.retry_until`
(a monotonic deadline, kept in a context variable so that it binds only the task that set
it): the payment run passes its lock's expiry, so no payment call is retried, or still
waiting for an answer, once another run could have taken the lock over.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import itertools
import json
import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from multipool.errors import ConfigError, PoolError

RPC_IN_WARMUP = -28

# The monotonic time after which no call of the current task is started or retried.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "multipool_rpc_deadline", default=None)


def _json_default(value: object) -> str:
    """Decimals go out as strings: the daemons parse "0.10000000" exactly."""
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot send {type(value).__name__} to the daemon: {value!r}")


def dumps(payload: object) -> str:
    """Given a JSON-RPC payload, return its JSON text with Decimals as exact strings.

    >>> dumps({"params": [Decimal("0.10000000")]})
    '{"params": ["0.10000000"]}'
    """
    return json.dumps(payload, default=_json_default)


def loads(body: bytes | str) -> Any:
    """Given a daemon's JSON text, return it with every non-integer number a Decimal.

    >>> loads('{"fee": 0.0000226}')["fee"]
    Decimal('0.0000226')
    """
    return json.loads(body, parse_float=Decimal)


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

    @staticmethod
    @contextlib.contextmanager
    def retry_until(deadline: float | None) -> Iterator[None]:
        """Within the ``with`` block, no call of this task (on any client) is started,
        retried or waited for past ``deadline`` (a ``time.monotonic()`` value): it raises
        :class:`DaemonUnavailable` instead. An earlier deadline already in force stays."""
        current = _DEADLINE.get()
        if deadline is not None and current is not None:
            deadline = min(deadline, current)
        token = _DEADLINE.set(deadline if deadline is not None else current)
        try:
            yield
        finally:
            _DEADLINE.reset(token)

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
        deadline = _DEADLINE.get()
        last: _Retryable | None = None
        while True:
            limit = timeout or self.timeout
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    why = f": {last}" if last is not None else ""
                    raise DaemonUnavailable(
                        f"not sent again: the caller's deadline has passed (daemon at "
                        f"{self.url}{why})", method=method)
                limit = min(limit, left)
            try:
                try:
                    result = await self._post(url, method, params, limit, longpoll)
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
                last = exc
                if exc.sent and not idempotent:
                    raise DaemonOutcomeUnknown(
                        f"{exc}; the daemon may have executed the call: check before "
                        "trying again", method=method) from exc
                now = time.monotonic()
                elapsed = now - started
                if ((self.retry_for is not None and elapsed >= self.retry_for)
                        or (deadline is not None and now >= deadline)):
                    raise DaemonUnavailable(f"daemon at {self.url} not available after "
                                            f"{elapsed:.1f}s: {exc}", method=method) from exc
                self._note_failure(method, exc)
                if self.retry_for is not None:
                    delay = min(delay, self.retry_for - elapsed)
                if deadline is not None:
                    delay = min(delay, deadline - now)
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
                headers = {"Content-Type": "application/json"}
                if self._auth:
                    headers["Authorization"] = self._auth
                async with self._session.post(url, data=dumps(payload), headers=headers,
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
            reply = loads(body)
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

    async def listunspent(self, minconf: int = 1) -> list[dict[str, Any]]:
        """Given a depth, return the wallet's spendable coins at least that deep and not
        locked (MWEB coins come without ``vout`` and ``scriptPubKey``)."""
        return await self._call("listunspent", [minconf, 9999999], wallet=True)

    async def createrawtransaction(self, inputs: list[dict[str, Any]],
                                   outputs: list[dict[str, Decimal]], *,
                                   replaceable: bool = True) -> str:
        """Given inputs ``{"txid", "vout"}`` and outputs ``{address: coins}`` in order,
        return the unsigned transaction's hex (BIP125-replaceable by default, so that an
        operator can bump its fee). Pure: nothing is stored or sent."""
        return await self._call("createrawtransaction", [inputs, outputs, 0, replaceable])

    async def fundrawtransaction(self, hex_tx: str, options: dict[str, Any]) -> dict[str, Any]:
        """Given a raw transaction and fundrawtransaction's options, return ``hex``,
        ``fee`` and ``changepos``. With ``lockUnspents`` the chosen coins are locked in the
        wallet's memory; a repeated call only locks again (released on the next payment
        run), so it is retried like a read."""
        return await self._call("fundrawtransaction", [hex_tx, options], wallet=True)

    async def signrawtransactionwithwallet(self, hex_tx: str) -> dict[str, Any]:
        """Given a raw transaction, return ``hex`` signed with the wallet's keys and
        ``complete``. Nothing is stored or sent."""
        return await self._call("signrawtransactionwithwallet", [hex_tx], wallet=True)

    async def decoderawtransaction(self, hex_tx: str) -> dict[str, Any]:
        """Given a raw transaction, return it decoded (txid, vsize, vin, vout)."""
        return await self._call("decoderawtransaction", [hex_tx])

    async def sendrawtransaction(self, hex_tx: str) -> str:
        """Given a signed transaction, hand it to the node (mempool and relay); return its
        txid. The same bytes can only ever be one transaction, so a repeated call is
        harmless (-27 "already in block chain", or "txn-already-known") and the call is
        retried after a lost answer too."""
        return await self._call("sendrawtransaction", [hex_tx])

    async def lockunspent(self, unlock: bool, outputs: list[dict[str, Any]]) -> bool:
        """Given unlock (True) or lock (False) and outputs ``{"txid", "vout"}``, change the
        wallet's in-memory locks (lost when the daemon restarts)."""
        return await self._call("lockunspent", [unlock, outputs], wallet=True)

    async def listlockunspent(self) -> list[dict[str, Any]]:
        """Return the outputs the wallet holds locked."""
        return await self._call("listlockunspent", [], wallet=True)

    async def getmempoolentry(self, txid: str) -> dict[str, Any]:
        """Given a txid, return its mempool entry; -5 when it is not in the mempool."""
        return await self._call("getmempoolentry", [txid])

    async def gettxout(self, txid: str, vout: int, include_mempool: bool = True) -> Any:
        """Given an outpoint, return the unspent output (value, scriptPubKey,
        confirmations), or None when it is spent (or never existed)."""
        return await self._call("gettxout", [txid, vout, include_mempool])

    async def estimatesmartfee(self, conf_target: int) -> dict[str, Any]:
        """Given a target in blocks, return ``feerate`` (coins per 1000 vbytes) or
        ``errors`` when the node has no estimate yet (always so in regtest)."""
        return await self._call("estimatesmartfee", [conf_target])

    async def getmempoolinfo(self) -> dict[str, Any]:
        """Return the mempool's size and its minimum fee rates (mempoolminfee,
        minrelaytxfee, in coins per 1000 vbytes)."""
        return await self._call("getmempoolinfo", [])

    async def getrawchangeaddress(self) -> str:
        """Return a new change address of the wallet."""
        return await self._call("getrawchangeaddress", [], wallet=True)

    async def listsinceblock(self, block_hash: str | None = None) -> dict[str, Any]:
        """Given a block hash (None: the whole history), return the wallet's transaction
        entries in blocks after it and in the mempool, and ``lastblock``, the tip."""
        params: list[Any] = [] if block_hash is None else [block_hash]
        return await self._call("listsinceblock", params, wallet=True)

    async def gettransaction(self, txid: str) -> dict[str, Any]:
        """Given a txid of the wallet, return its details (fee, confirmations negative
        when conflicted, ``walletconflicts``, ``replaced_by_txid``, ``hex``); -5 when the
        wallet does not know it."""
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
