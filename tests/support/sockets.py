"""What a process listens on, read from /proc (no tool needed, any user's process as
root): for tests that check a daemon binds exactly the ports it was given."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def listening_ports(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs a process listens on over TCP: its socket inodes matched
    against the kernel's TCP tables. IPv4 addresses are dotted; IPv6 ones are "[v6]"."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN, one of its sockets
                address, port = fields[1].split(":")
                shown = ("[v6]" if table == "tcp6" else
                         ".".join(str(b) for b in reversed(bytes.fromhex(address))))
                found.add((shown, int(port, 16)))
    return found


def processes_with(argument: str) -> list[int]:
    """The pids whose command line has this exact argument."""
    wanted = argument.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if wanted in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found
