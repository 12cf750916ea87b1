"""One miner connection: newline-delimited JSON framing under a Stratum V1 dispatcher.

Sessions are :class:`asyncio.Protocol` objects, not stream tasks: ten thousand idle
miners then cost a few kilobytes each and no task. Everything a client sends is hostile
until proven otherwise; the limits are the named class attributes of
:class:`SessionLimits`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from multipool.chain.header import u32_from_stratum
from multipool.errors import AddressError, SerializationError
from multipool.stratum import protocol as p
from multipool.stratum.protocol import StratumError
from multipool.stratum.vardiff import Vardiff

if TYPE_CHECKING:
    from multipool.config import PortConfig
    from multipool.stratum.jobs import Job
    from multipool.stratum.server import StratumServer

WORKER_NAME = re.compile(r"[A-Za-z0-9_\-.]{0,64}")
# BIP310 pool-side mask: the 16 bits BIP320 leaves to miners.
VERSION_ROLLING_MASK = 0x1FFFE000
# Bitcoin Core refuses blocks more than two hours ahead of its clock.
MAX_NTIME_AHEAD = 7200


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-connection limits. Each one bounds what a single hostile client can cost."""

    # A submit line is ~200 bytes; 16 KiB leaves room for long worker names and
    # configure requests while capping the buffer a client can make us hold.
    max_line: int = 16 * 1024
    # A miner that stops reading while jobs keep coming is cut off at this backlog.
    max_send_buffer: int = 1024 * 1024
    # Token bucket for requests: a real miner sends a share every few seconds; beyond
    # the burst, reading pauses until the bucket refills (floods slow down, not crash).
    messages_per_second: float = 100.0
    message_burst: float = 400.0
    # Garbage (bad JSON, unknown methods, malformed requests) tolerated before closing.
    max_bad_messages: int = 50
    # Seconds a closed connection has to take our last words before it is cut.
    close_grace: float = 5.0
    # Seconds a TLS client has to complete its handshake. Until then the connection
    # holds a slot under the per-IP and global caps, so it must not hold it for long.
    tls_handshake_timeout: float = 10.0
    # Distinct worker names one connection may authorize.
    max_workers: int = 64
    # Scrypt checks of one connection waiting for the thread pool; beyond this the
    # connection is not read until checks finish (backpressure, nothing rejected).
    max_pending_checks: int = 64
    # Jobs whose sending difficulty a session remembers (more than the manager keeps).
    job_memory: int = 32


@dataclass(slots=True)
class Worker:
    address: str
    worker: str
    name: str


class StratumSession(asyncio.Protocol):
    """The server side of one miner connection."""

    def __init__(self, server: StratumServer, port: PortConfig, session_id: int, *,
                 reserved: bool = False):
        self.server = server
        # Already counted under the connection caps (a TLS connection is counted from
        # the start of its handshake).
        self.reserved = reserved
        self.port = port
        self.session_id = session_id
        self.limits = server.limits
        self.logger = logging.LoggerAdapter(server.logger, {"session": session_id})
        self.transport: asyncio.Transport | None = None
        self.ip = "?"
        self.buffer = b""
        self.connected_at = self.last_activity = time.monotonic()
        self.tokens = self.limits.message_burst
        self.tokens_at = self.connected_at
        self.paused = False
        self.closing = False
        self.bad_messages = 0
        self.pending_checks = 0
        # Output of the current loop iteration, written once by _flush.
        self._batch: list[bytes] | None = None

        self.subscribed = False
        self.extranonce1 = b""
        self.workers: dict[str, Worker] = {}
        self.difficulty = port.difficulty
        self.fixed_difficulty = False
        self.sent_difficulty: float | None = None
        self.job_difficulty: OrderedDict[str, float] = OrderedDict()
        self.version_mask = 0
        self.vardiff = (Vardiff(server.vardiff_policy(port), self.connected_at)
                        if port.vardiff else None)
        self.valid_shares = 0
        self.invalid_shares = 0

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "?"
        refusal = self.server.admit(self)
        if refusal is not None:
            self.logger.info("refused connection from %s: %s", self.ip, refusal)
            self.closing = True
            transport.abort()
            return
        if self.buffer:  # sent in the same flight as the end of a TLS handshake
            self._process_buffer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.forget(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buffer += data
        self.last_activity = time.monotonic()
        if self.transport is not None:
            self._process_buffer()

    def _process_buffer(self) -> None:
        """Handle every complete line in the buffer (until a limit says stop), sending
        the replies of one pass in a single write."""
        buffer, start, max_line = self.buffer, 0, self.limits.max_line
        try:
            while not self.closing:
                newline = buffer.find(b"\n", start)
                if (newline if newline >= 0 else len(buffer)) - start > max_line:
                    self.send_error(None, StratumError(p.OTHER, "line too long"))
                    self.close("sent a line longer than the limit")
                    return
                if newline < 0:
                    return
                if self.pending_checks >= self.limits.max_pending_checks:
                    # Backpressure: read no more until the thread pool catches up.
                    self._pause()
                    return
                if not self._take_token():
                    return
                line = buffer[start:newline]
                start = newline + 1
                if line.strip():
                    self.handle_line(line)
        finally:
            self.buffer = buffer[start:] if start else buffer

    def _take_token(self) -> bool:
        now = time.monotonic()
        rate, burst = self.limits.messages_per_second, self.limits.message_burst
        self.tokens = min(burst, self.tokens + (now - self.tokens_at) * rate)
        self.tokens_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        if not self.paused:
            self._pause()
            asyncio.get_running_loop().call_later((1 - self.tokens) / rate, self.resume)
        return False

    def _pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def checks_done(self) -> None:
        """A share check finished: read again once half the backlog is gone (resuming
        on every single check would toggle the socket in epoll per share)."""
        if self.paused and self.pending_checks <= self.limits.max_pending_checks // 2:
            self.resume()

    def resume(self) -> None:
        """Read again after a pause for the rate limit or for pending share checks."""
        if self.closing or self.transport is None or not self.paused:
            return
        self.paused = False
        self.transport.resume_reading()
        self._process_buffer()

    # -- output ----------------------------------------------------------------------

    def send_raw(self, line: bytes) -> None:
        if self.closing or self.transport is None:
            return
        if self._batch is None:
            # Everything said to this miner in one loop iteration goes out in one write:
            # under load one send() per reply costs more than the share check.
            self._batch = [line]
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._batch.append(line)

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if not batch or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(b"".join(batch) if len(batch) > 1 else batch[0])
        if self.transport.get_write_buffer_size() > self.limits.max_send_buffer:
            self.close("does not read what it is sent", abort=True)

    def _send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def reply(self, msg_id: Any, result: Any) -> None:
        if result is True and type(msg_id) is int:
            # The answer to nearly every share: skip the JSON encoder.
            self.send_raw(b'{"id":%d,"result":true,"error":null}\n' % msg_id)
            return
        self._send({"id": msg_id, "result": result, "error": None})

    def send_error(self, msg_id: Any, error: StratumError) -> None:
        self._send({"id": msg_id, "result": None, "error": error.to_json()})

    def notify(self, method: str, params: list[Any]) -> None:
        self._send({"id": None, "method": method, "params": params})

    def close(self, why: str, *, abort: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        batch, self._batch = self._batch, None
        self.logger.info("closing connection from %s: %s", self.ip, why)
        transport = self.transport
        if transport is None:
            return
        if abort:
            transport.abort()
            return
        # Send what we said (an error, a final reply), then drop the link; a peer that
        # does not read it would hold the session forever, so abort after a grace time.
        if batch:
            transport.write(b"".join(batch))
        transport.close()
        asyncio.get_running_loop().call_later(self.limits.close_grace, transport.abort)

    # -- dispatch --------------------------------------------------------------------

    def handle_line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            self._bad_message(None, StratumError(p.OTHER, "invalid JSON"))
            return
        if not isinstance(message, dict):
            self._bad_message(None, StratumError(p.OTHER, "request must be a JSON object"))
            return
        msg_id = message.get("id")
        if not isinstance(msg_id, int | str | None) or isinstance(msg_id, bool):
            msg_id = None
        method = message.get("method")
        params = message.get("params", [])
        if not isinstance(method, str):
            if "result" in message or "error" in message:
                return  # a miner answering something we sent: nothing to do
            self._bad_message(msg_id, StratumError(p.OTHER, "request has no method"))
            return
        if not isinstance(params, list):
            self._bad_message(msg_id, StratumError(p.OTHER, "params must be a list"))
            return
        handler = self.HANDLERS.get(method)
        if handler is None:
            self._bad_message(msg_id, StratumError(p.OTHER, f"unknown method {method[:64]!r}"))
            return
        try:
            handler(self, msg_id, params)
        except StratumError as exc:
            self.send_error(msg_id, exc)

    def _bad_message(self, msg_id: Any, error: StratumError) -> None:
        self.bad_messages += 1
        self.send_error(msg_id, error)
        if self.bad_messages > self.limits.max_bad_messages:
            self.close(f"sent {self.bad_messages} malformed or unknown requests")

    # -- methods -----------------------------------------------------------------------

    def m_subscribe(self, msg_id: Any, params: list[Any]) -> None:
        if not self.subscribed:
            self.extranonce1 = self.server.allocate_extranonce1()
            self.subscribed = True
        sid = f"{self.session_id:x}"
        self.reply(msg_id, [[["mining.set_difficulty", sid], ["mining.notify", sid]],
                             self.extranonce1.hex(), self.server.extranonce2_size])
        self._maybe_start()

    def m_authorize(self, msg_id: Any, params: list[Any]) -> None:
        name = p.string_param(params, 0, "username")
        password = params[1] if len(params) > 1 and isinstance(params[1], str) else ""
        try:
            worker = self._parse_worker(name)
            fixed = self._parse_password(password)
        except StratumError as exc:
            # Reply, then disconnect: a miner with a wrong address must notice.
            self.send_error(msg_id, exc)
            self.close(f"authorization refused for {name[:100]!r}: {exc.message}")
            return
        if name not in self.workers and len(self.workers) >= self.limits.max_workers:
            raise StratumError(p.UNAUTHORIZED, "too many workers on one connection")
        self.workers[name] = worker
        if fixed is not None:
            self.fixed_difficulty = True
            self.vardiff = None
            self.difficulty = fixed
        self.logger.info("authorized %s from %s", name, self.ip)
        self.reply(msg_id, True)
        self._maybe_start()

    def _parse_worker(self, name: str) -> Worker:
        address, _, worker = name.partition(".")
        if not WORKER_NAME.fullmatch(worker):
            raise StratumError(p.UNAUTHORIZED, "worker name may hold up to 64 letters, "
                               "digits, '_', '-' and '.'")
        try:
            self.server.check_address(address)
        except AddressError as exc:
            raise StratumError(p.UNAUTHORIZED, f"invalid payout address: {exc}") from None
        return Worker(address, worker, name)

    def _parse_password(self, password: str) -> float | None:
        """A password of ``d=N`` (alone or among comma-separated options) asks for a
        fixed difficulty N, clamped to the port's limits; anything else is ignored."""
        for option in password.split(","):
            key, _, value = option.strip().partition("=")
            if key == "d":
                try:
                    wanted = p.positive_number(float(value), "d")
                except ValueError:
                    raise StratumError(p.OTHER, f"d={value[:20]} is not a number") from None
                return min(self.port.ceiling, max(self.port.floor, wanted))
        return None

    def m_configure(self, msg_id: Any, params: list[Any]) -> None:
        extensions = params[0] if params and isinstance(params[0], list) else []
        options = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        result: dict[str, Any] = {}
        for ext in extensions[:16]:
            if ext == "version-rolling":
                if not self.server.algorithm.name == "sha256d":
                    result["version-rolling"] = False
                    continue
                try:
                    wanted = int(str(options.get("version-rolling.mask", "ffffffff")), 16)
                except ValueError:
                    raise StratumError(p.OTHER, "version-rolling.mask is not hex") from None
                self.version_mask = wanted & VERSION_ROLLING_MASK
                result["version-rolling"] = True
                result["version-rolling.mask"] = f"{self.version_mask:08x}"
            elif isinstance(ext, str):
                result[ext[:64]] = False
        self.reply(msg_id, result)

    def m_suggest_difficulty(self, msg_id: Any, params: list[Any]) -> None:
        wanted = p.positive_number(params[0] if params else None, "difficulty")
        if not self.fixed_difficulty:
            self.difficulty = min(self.port.ceiling, max(self.port.floor, wanted))
            if self.subscribed and self.workers and self.sent_difficulty is not None:
                self.send_difficulty()
        self.reply(msg_id, True)

    def m_extranonce_subscribe(self, msg_id: Any, params: list[Any]) -> None:
        # Extranonce1 never changes during a session, so there is nothing to push later.
        self.reply(msg_id, True)

    def m_submit(self, msg_id: Any, params: list[Any]) -> None:
        self.server.submit(self, msg_id, params)

    def m_ping(self, msg_id: Any, params: list[Any]) -> None:
        self.reply(msg_id, "pong")

    HANDLERS = {
        "mining.subscribe": m_subscribe,
        "mining.authorize": m_authorize,
        "mining.configure": m_configure,
        "mining.suggest_difficulty": m_suggest_difficulty,
        "mining.extranonce.subscribe": m_extranonce_subscribe,
        "mining.submit": m_submit,
        "mining.ping": m_ping,
    }

    # -- work --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.subscribed and bool(self.workers) and not self.closing

    def _maybe_start(self) -> None:
        if self.ready and self.sent_difficulty is None:
            job = self.server.jobs.current
            self.send_difficulty()
            if job is not None:
                self.send_job(job, clean=True)

    def send_difficulty(self) -> None:
        self.notify("mining.set_difficulty", [self.difficulty])
        self.sent_difficulty = self.difficulty

    def send_job(self, job: Job, *, clean: bool, line: bytes | None = None) -> None:
        """Send a job (its pre-encoded notify line when given) at the current difficulty."""
        if self.sent_difficulty != self.difficulty:
            self.send_difficulty()
        self.job_difficulty[job.job_id] = self.difficulty
        if len(self.job_difficulty) > self.limits.job_memory:
            self.job_difficulty.popitem(last=False)
        if line is None:
            line = self.server.notify_line(job, clean)
        self.send_raw(line)

    def required_difficulty(self, job_id: str) -> float:
        """The difficulty a share for ``job_id`` must meet: the one in force when the job
        was sent, or the current one if the miner was told a lower one since (it may
        already be working at it)."""
        return min(self.job_difficulty.get(job_id, self.difficulty), self.difficulty)

    def share_result(self, valid: bool, now: float) -> None:
        if valid:
            self.valid_shares += 1
            if self.vardiff is not None:
                new = self.vardiff.on_share(now, self.difficulty)
                if new is not None:
                    self.set_difficulty(new, "vardiff")
        else:
            self.invalid_shares += 1

    def set_difficulty(self, new: float, why: str) -> None:
        self.logger.debug("difficulty %g -> %g (%s)", self.difficulty, new, why)
        self.difficulty = new
        if self.ready:
            self.send_difficulty()


def parse_submit(params: list[Any], extranonce2_size: int
                 ) -> tuple[str, str, bytes, int, int, int | None]:
    """Given mining.submit params, return (worker, job_id, extranonce2, ntime, nonce,
    version_bits or None), or raise StratumError naming the bad field."""
    if not 5 <= len(params) <= 6:
        raise StratumError(p.OTHER, "mining.submit takes 5 or 6 params")
    worker = p.string_param(params, 0, "worker name")
    job_id = p.string_param(params, 1, "job id", max_len=64)
    extranonce2 = p.hex_bytes(params[2], "extranonce2", size=extranonce2_size)
    try:
        ntime = u32_from_stratum(params[3], "ntime")
        nonce = u32_from_stratum(params[4], "nonce")
        version_bits = u32_from_stratum(params[5], "version bits") if len(params) == 6 else None
    except SerializationError as exc:
        raise StratumError(p.OTHER, str(exc)) from None
    return worker, job_id, extranonce2, ntime, nonce, version_bits
