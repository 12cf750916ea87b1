"""One change to a server tree at a time.

``init``, ``coin add`` and ``coin remove`` read the tree (the ports coins use, users,
files, units), plan their changes and apply them. Two at once could both pick the same
free stratum port, or one could remove a coin the other is rewriting. Each holds an
exclusive lock (``flock``) on the tree's directory from before it reads the tree until
its last change is applied, and writes its command in ``<root>/.change.lock``; a second
one waits, saying which command holds it, and gives up with an error after a deadline.
The lock is the kernel's: a command that is killed releases it with its last file
descriptor, so a crash never leaves the tree locked.

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

HOLDER_FILE = ".change.lock"
# How long a command waits for another one's change to the tree (a coin's first build
# takes a while; a command held longer than this is more likely stuck than busy).
WAIT_SECONDS = 3600.0
POLL_SECONDS = 0.2


class TreeLockedError(PoolError):
    """Another command kept the tree locked past the deadline."""


@contextlib.contextmanager
def tree_lock(root: Path, command: str, *, wait: float = WAIT_SECONDS,
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the change lock of the tree at ``root`` for the block. ``command`` says who
    holds it (shown to a command that waits). If another command holds it, call
    ``on_wait`` once with a line saying which, then wait up to ``wait`` seconds; past
    that raise :class:`TreeLockedError`.

    The lock is on the tree's directory itself; a tree not made yet (``init``) is locked
    through the nearest directory above it that exists, so that nothing is created
    before ``init`` has checked its input and listed its changes."""
    target = root
    while not target.is_dir() and target != target.parent:
        target = target.parent
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(root)
                if time.monotonic() >= deadline:
                    raise TreeLockedError(
                        f"{holder} kept {root} locked for more than {wait:g} s; nothing "
                        f"was changed (if no multipool command is running, the lock is "
                        f"free: try again)") from None
                if not told and on_wait is not None:
                    on_wait(f"waiting for {holder} to finish changing {root} ...")
                    told = True
                time.sleep(POLL_SECONDS)
        note = root / HOLDER_FILE
        if root.is_dir():
            _write(note, f"`{command}` (pid {os.getpid()})\n")
        try:
            yield
        finally:
            if note.is_file():
                _write(note, "")
    finally:
        os.close(fd)


def _write(note: Path, text: str) -> None:
    """Who holds the lock, for a command that waits (the lock itself is the directory's)."""
    fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _holder(root: Path) -> str:
    """Who holds the lock, as its holder wrote it."""
    try:
        text = (root / HOLDER_FILE).read_text(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another multipool command"
