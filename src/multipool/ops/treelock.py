"""One change to a server tree at a time.

``init``, ``coin add`` and ``coin remove`` read the tree (the ports coins use, users,
files, units), plan their changes and apply them. Two at once could both pick the same
free stratum port, or one could remove a coin the other is rewriting. Each holds an
exclusive lock on ``<root>/.change.lock`` from before it reads the tree until its last
change is applied; a second one waits, saying which command holds it, and gives up with
an error after a deadline. The lock is the kernel's (``flock``): a command that is killed
releases it with its last file descriptor, so a crash never leaves the tree locked.

A dry run changes nothing and takes no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from multipool.errors import PoolError

LOCK_NAME = ".change.lock"
# How long a command waits for another one's change to the tree (a coin's first build
# takes a while; a command held longer than this is more likely stuck than busy).
WAIT_SECONDS = 3600.0
POLL_SECONDS = 0.2


class TreeLockedError(PoolError):
    """Another command kept the tree locked past the deadline."""


@contextlib.contextmanager
def tree_lock(root: Path, command: str, *, wait: float = WAIT_SECONDS,
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the change lock of the tree at ``root`` (created if missing, and removed again
    if the block put nothing else in it) for the block.
    ``command`` says who holds it (shown to a command that waits). If another command
    holds it, call ``on_wait`` once with a line saying which, then wait up to ``wait``
    seconds; past that raise :class:`TreeLockedError`."""
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if time.monotonic() >= deadline:
                    raise TreeLockedError(
                        f"{holder} kept {root} locked for more than {wait:g} s; nothing "
                        f"was changed (if no multipool command is running, the lock is "
                        f"free: try again)") from None
                if not told and on_wait is not None:
                    on_wait(f"waiting for {holder} to finish changing {root} ...")
                    told = True
                time.sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`{command}` (pid {os.getpid()})\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            if created:
                _remove_if_unused(root, path)
    finally:
        os.close(fd)


def _remove_if_unused(root: Path, path: Path) -> None:
    """A command refused before its first change leaves no tree behind: the directory it
    made for the lock goes again if the lock is all it holds."""
    if [entry.name for entry in root.iterdir()] == [LOCK_NAME]:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            root.rmdir()


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it."""
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another multipool command"
