"""Block notifications over a daemon's ZMQ ``hashblock`` publisher.

Bitcoin Core and most of its forks publish ``hashblock`` messages when started with
``-zmqpubhashblock=tcp://...``. The Debian build of litecoind has no ZMQ, so the engine
also long-polls; whichever notices a block first wins and the other finds nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import zmq
import zmq.asyncio


class HashblockListener:
    """Subscribes to ``hashblock`` on a ZMQ endpoint and calls ``on_block(hash_hex)``."""

    # A publisher that restarts loses messages in between; ZMQ reconnects on its own.
    RECONNECT_IVL_MS = 500

    def __init__(self, endpoint: str, on_block: Callable[[str], None],
                 logger: logging.Logger | None = None):
        self.endpoint = endpoint
        self.on_block = on_block
        self.logger = logger or logging.getLogger(__name__)
        self.received = 0

    async def run(self) -> None:
        """Listen until cancelled."""
        context = zmq.asyncio.Context.instance()
        socket = context.socket(zmq.SUB)
        socket.setsockopt(zmq.RECONNECT_IVL, self.RECONNECT_IVL_MS)
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.setsockopt(zmq.SUBSCRIBE, b"hashblock")
        socket.connect(self.endpoint)
        self.logger.info("listening for hashblock on %s", self.endpoint)
        try:
            while True:
                frames = await socket.recv_multipart()
                # topic, 32-byte hash in display order, 4-byte sequence number
                if len(frames) >= 2 and frames[0] == b"hashblock" and len(frames[1]) == 32:
                    self.received += 1
                    self.on_block(frames[1].hex())
                else:
                    self.logger.warning("ignoring malformed ZMQ message with %d frames",
                                        len(frames))
        finally:
            socket.close(linger=0)
