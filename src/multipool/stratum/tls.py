"""TLS ports: a connection is counted from its first byte, not from a finished handshake.

asyncio's own TLS server hands a connection to its protocol only once the handshake is
done, and waits 60 s for one: a client that opens connections and never completes a
handshake would hold sockets outside the per-IP and global connection caps. So a TLS
port listens in plain TCP; each connection takes its slot under the caps at once (or is
refused), then upgrades with ``loop.start_tls`` under ``tls_handshake_timeout``, and only
then becomes a :class:`StratumSession`. A failed or timed-out handshake frees the slot.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multipool.config import PortConfig
    from multipool.stratum.server import StratumServer


class TlsAcceptor(asyncio.Protocol):
    """One connection on a TLS port, from accept until its handshake is over."""

    def __init__(self, server: StratumServer, port: PortConfig, context: ssl.SSLContext):
        self.server = server
        self.port = port
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.ip = "?"
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # Nothing may be read before start_tls takes the connection over: the client's
        # first bytes are its hello.
        transport.pause_reading()
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "?"
        refusal = self.server.reserve(self.ip, handshake=True)
        if refusal is not None:
            self.server.logger.info("refused TLS connection from %s: %s", self.ip, refusal)
            transport.abort()
            return
        self.server.handshakes.add(self)
        self.task = asyncio.get_running_loop().create_task(self._handshake(transport))

    def connection_lost(self, exc: Exception | None) -> None:
        # Closed before start_tls took over (stop_listening): the task ends it.
        if self.task is not None:
            self.task.cancel()

    def abort(self) -> None:
        """Drop the connection (the server stops listening)."""
        if self.task is not None:
            self.task.cancel()
        elif self.transport is not None:
            self.transport.abort()

    async def _handshake(self, transport: asyncio.Transport) -> None:
        server = self.server
        session = server.new_session(self.port, reserved=True)
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport, session, self.context, server_side=True,
                ssl_handshake_timeout=server.limits.tls_handshake_timeout)
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError) as exc:
            # OSError covers a reset and the timeout (ConnectionAbortedError).
            transport.abort()
            server.handshakes.discard(self)
            server.release(self.ip, handshake=True)
            if not isinstance(exc, asyncio.CancelledError):
                server.logger.debug("TLS handshake with %s failed: %s", self.ip, exc)
            return
        server.handshakes.discard(self)
        if not isinstance(tls, asyncio.Transport):  # closed as the handshake ended
            transport.abort()
            server.release(self.ip, handshake=True)
            return
        server.handshake_done()
        session.connection_made(tls)
