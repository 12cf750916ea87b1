"""Replacing a file so that a reader sees the old content or the new, never half of it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int, uid: int = -1, gid: int = -1,
                     durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path`` that has its final mode (and
    owner, when ``uid``/``gid`` are given) before any byte goes in, so a secret is never
    readable by others, then rename it over ``path``. ``durable``: fsync before the
    rename, so a crash leaves the old file or the whole new one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)  # -1, -1: the owner stays the caller
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
