"""The share spool: an append-only local file that holds shares while the database is
unreachable, replayed in order and exactly once when it returns.

Each spool file has a unique name. Replay inserts a chunk of rows and records the byte
offset reached in ``spool_progress`` in the same transaction, so a crash at any point
neither loses nor repeats a share; a file fully replayed is deleted, and new spooling
always starts a new file.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

SUFFIX = ".jsonl"


class ShareSpool:
    """Append-only spool files in one directory, oldest first."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._current: Path | None = None

    def files(self) -> list[Path]:
        """Spool files in the order they were started (names begin with a timestamp)."""
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append rows to the current spool file; the write reaches the OS before
        returning, so a killed process loses none of it."""
        if self._current is None or not self._current.exists():
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{SUFFIX}"
            self._current = self.directory / name
        data = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
        with open(self._current, "a", encoding="utf-8") as spool:
            spool.write(data)
            spool.flush()
            os.fsync(spool.fileno())

    def read(self, path: Path, offset: int, max_rows: int
             ) -> tuple[list[dict[str, Any]], int]:
        """Given a spool file and a byte offset, return up to ``max_rows`` complete rows
        from there and the offset after them. A torn last line (a crash mid-write) is
        left for later; it is completed by nothing, so it stays unread until the file is
        finished and removed."""
        rows: list[dict[str, Any]] = []
        with open(path, "rb") as spool:
            spool.seek(offset)
            for line in itertools.islice(spool, max_rows):
                if not line.endswith(b"\n"):
                    break
                rows.append(json.loads(line))
                offset += len(line)
        return rows, offset

    def finish(self, path: Path, offset: int) -> bool:
        """Replay of ``path`` read nothing more at ``offset``: remove the file and return
        True, unless rows were appended to it meanwhile (return False: read again).
        Bytes past ``offset`` in a file this process is not writing are a torn line
        from a killed writer and go with the file."""
        if path == self._current:
            if path.stat().st_size > offset:
                return False
            self._current = None
        path.unlink(missing_ok=True)
        return True

