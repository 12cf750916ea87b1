"""The share spool: an append-only local file that holds shares while the database is
unreachable, replayed in order and exactly once when it returns.

Each spool file has a unique name. Replay inserts a chunk of rows and records the byte
offset reached in ``spool_progress`` in the same transaction, so a crash at any point
neither loses nor repeats a share; a file fully replayed is deleted, and new spooling
always starts a new file.

Rows that a database refuses outright (an integrity or data error: not an outage, so
waiting would not help) are set aside in the quarantine file beside the spool directory
(:class:`Quarantine`) with the error, for an operator to look at.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

SUFFIX = ".jsonl"
PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


class ShareSpool:
    """Append-only spool files in one directory, oldest first."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        # The shares hold miners' IP addresses: only the pool user reads them, whatever
        # the umask and the group the pool directory hands down to its files.
        self.directory.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
        if stat.S_IMODE(self.directory.stat().st_mode) != PRIVATE_DIRECTORY:
            self.directory.chmod(PRIVATE_DIRECTORY)
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
        descriptor = os.open(self._current, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                             | os.O_CLOEXEC, PRIVATE_FILE)
        with open(descriptor, "a", encoding="utf-8") as spool:
            spool.write(data)
            spool.flush()
            os.fsync(spool.fileno())

    def read(self, path: Path, offset: int, max_rows: int
             ) -> tuple[list[dict[str, Any]], int]:
        """Given a spool file and a byte offset, return up to ``max_rows`` complete rows
        from there and the offset after them. A torn last line (a crash mid-write) is
        left for later; it is completed by nothing, so it stays unread until the file is
        finished and removed."""
        lines = self.read_lines(path, offset, max_rows)
        return [row for row, _ in lines], (lines[-1][1] if lines else offset)

    def read_lines(self, path: Path, offset: int, max_rows: int
                   ) -> list[tuple[dict[str, Any], int]]:
        """:meth:`read`, each row with the byte offset just after it."""
        rows: list[tuple[dict[str, Any], int]] = []
        with open(path, "rb") as spool:
            spool.seek(offset)
            for line in itertools.islice(spool, max_rows):
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
                rows.append((json.loads(line), offset))
        return rows

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



class Quarantine:
    """An append-only file of rows the database refused, one JSON line each with the
    error and when it happened."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def add(self, rows: list[dict[str, Any]], error: str) -> None:
        """Append ``rows`` with the database's ``error``, synced to disk."""
        now = time.time()
        data = "".join(json.dumps({"time": now, "error": error, "row": row},
                                  separators=(",", ":")) + "\n" for row in rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Miners' IP addresses: the pool user's alone (see ShareSpool).
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             PRIVATE_FILE)
        with open(descriptor, "a", encoding="utf-8") as quarantine:
            quarantine.write(data)
            quarantine.flush()
            os.fsync(quarantine.fileno())
