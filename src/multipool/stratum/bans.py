"""Per-IP bookkeeping: connection counts and bans for a high invalid-share ratio."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class _IpStats:
    connections: int = 0
    valid: int = 0
    invalid: int = 0


class IpGuard:
    """Counts connections and share results per IP and bans IPs whose share stream is
    mostly invalid. Entries are dropped when an IP has no connection and no ban, so the
    table cannot grow beyond the number of connected or banned addresses."""

    def __init__(self, *, max_per_ip: int, ban_seconds: float, invalid_percent: float,
                 min_shares: int, clock=time.monotonic):
        self.max_per_ip = max_per_ip
        self.ban_seconds = ban_seconds
        self.invalid_percent = invalid_percent
        self.min_shares = min_shares
        self.clock = clock
        self.stats: dict[str, _IpStats] = {}
        self.banned_until: dict[str, float] = {}

    def is_banned(self, ip: str) -> bool:
        until = self.banned_until.get(ip)
        if until is None:
            return False
        if self.clock() >= until:
            del self.banned_until[ip]
            return False
        return True

    def prune(self) -> None:
        """Forget expired bans (an IP that never returns would otherwise stay listed)."""
        now = self.clock()
        for ip in [ip for ip, until in self.banned_until.items() if until <= now]:
            del self.banned_until[ip]

    def admit(self, ip: str) -> str | None:
        """Given a new connection's IP, return why it is refused, or None and count it."""
        if self.is_banned(ip):
            return "banned"
        stats = self.stats.setdefault(ip, _IpStats())
        if stats.connections >= self.max_per_ip:
            return "too many connections from this address"
        stats.connections += 1
        return None

    def release(self, ip: str) -> None:
        stats = self.stats.get(ip)
        if stats is None:
            return
        stats.connections -= 1
        if stats.connections <= 0:
            del self.stats[ip]

    def share(self, ip: str, valid: bool) -> bool:
        """Count a share from ``ip``; return True if the IP is now banned."""
        stats = self.stats.get(ip)
        if stats is None:
            return False
        if valid:
            stats.valid += 1
        else:
            stats.invalid += 1
        total = stats.valid + stats.invalid
        if total < self.min_shares:
            return False
        if stats.invalid * 100 >= self.invalid_percent * total and self.ban_seconds > 0:
            self.banned_until[ip] = self.clock() + self.ban_seconds
            stats.valid = stats.invalid = 0
            return True
        if total >= 4 * self.min_shares:
            # Keep the ratio about recent behaviour, not the whole connection's life.
            stats.valid //= 2
            stats.invalid //= 2
        return False
