"""A bare stratum client for tests: sends raw lines, reads JSON messages."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class RawClient:
    """Talks newline-delimited JSON to a stratum port with no protocol smarts, so tests
    can send anything, well-formed or not."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.notifications: list[dict[str, Any]] = []
        self._next_id = 0

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawClient:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        return cls(reader, writer)

    async def send_line(self, line: bytes) -> None:
        self.writer.write(line)
        await self.writer.drain()

    async def read(self, timeout: float = 5.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionError("server closed the connection")
        return json.loads(line)

    async def call(self, method: str, params: list[Any], timeout: float = 5.0
                   ) -> dict[str, Any]:
        """Send a request and return its reply; notifications read meanwhile are kept."""
        self._next_id += 1
        msg_id = self._next_id
        await self.send_line(json.dumps({"id": msg_id, "method": method,
                                         "params": params}).encode() + b"\n")
        while True:
            message = await self.read(timeout)
            if message.get("id") == msg_id and "method" not in message:
                return message
            self.notifications.append(message)

    async def wait_notification(self, method: str, timeout: float = 5.0) -> dict[str, Any]:
        for i, message in enumerate(self.notifications):
            if message.get("method") == method:
                return self.notifications.pop(i)
        while True:
            message = await self.read(timeout)
            if message.get("method") == method:
                return message
            self.notifications.append(message)

    async def closed(self, timeout: float = 5.0) -> bool:
        """Read until EOF; return True if the server closed the connection in time."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True  # a reset is a close too
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
