"""The server tree and who owns what in it.

    /opt/multipool/          root:root 0755     (--root DIR for a local install)
      multipool.toml         root:root 0600     server config (may hold a database admin URL)
      bin/<prefix>/          root:<p>d 0750     the coin's daemon binary (root-owned, never setuid)
      src/<prefix>/          build:build 0700   daemon sources, only the build user reads them
      wallet/<prefix>/       <p>d:<p>d 0700     the daemon's datadir and wallet
      pool/<prefix>/         <p>pool:web 2710   pool engine state, SQLite database, spool:
                                                the web user reads pool.db* (0640, group
                                                web by the setgid bit) and nothing else
                                                (no listing; spool 0700, files 0600)
      coin/<prefix>/         root:<p>pool 0750  coin.toml (0640, RPC credentials) + links
      web/                   root:web 0751      what the web process may read
        <prefix>/            <p>pool:web 2750   the engine's status.json (0640)
      backup/                root:root 0700
      log/                   root:root 0755

In local mode there are no users: everything belongs to whoever runs multipool, with the
same modes. The names here are the contract the tests check.
"""

from __future__ import annotations

import getpass
import grp
import os
from dataclasses import dataclass
from pathlib import Path

BUILD_USER = "multipool-build"
WEB_USER = "multipool-web"
SERVER_CONFIG = "multipool.toml"
COIN_CONFIG = "coin.toml"


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of the tree with the owner, group and mode it must have (None: the caller's)."""

    path: Path
    owner: str | None
    group: str | None
    mode: int
    kind: str = "directory"  # directory | file


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path
    mode: str = "system"  # system | local

    @property
    def system(self) -> bool:
        return self.mode == "system"

    @property
    def config_file(self) -> Path:
        return self.root / SERVER_CONFIG

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def backup(self) -> Path:
        return self.root / "backup"

    @property
    def log(self) -> Path:
        return self.root / "log"

    def bin_dir(self, prefix: str) -> Path:
        return self.bin / prefix

    def src_dir(self, prefix: str) -> Path:
        return self.src / prefix

    def wallet_dir(self, prefix: str) -> Path:
        return self.root / "wallet" / prefix

    def pool_dir(self, prefix: str) -> Path:
        return self.root / "pool" / prefix

    def coin_dir(self, prefix: str) -> Path:
        return self.root / "coin" / prefix

    @property
    def web(self) -> Path:
        return self.root / "web"

    def public_dir(self, prefix: str) -> Path:
        return self.web / prefix

    def coin_file(self, prefix: str) -> Path:
        return self.coin_dir(prefix) / COIN_CONFIG

    def prefixes(self) -> list[str]:
        """The coins added so far: the coin/<prefix>/ directories holding a coin.toml."""
        coin_root = self.root / "coin"
        if not coin_root.is_dir():
            return []
        return sorted(p.name for p in coin_root.iterdir() if (p / COIN_CONFIG).is_file())

    # -- users ---------------------------------------------------------------------------

    def daemon_user(self, prefix: str) -> str | None:
        return f"{prefix}d" if self.system else None

    def pool_user(self, prefix: str) -> str | None:
        return f"{prefix}pool" if self.system else None

    @property
    def build_user(self) -> str | None:
        return BUILD_USER if self.system else None

    @property
    def web_user(self) -> str | None:
        return WEB_USER if self.system else None

    @property
    def admin(self) -> str | None:
        """Owner of what only the operator may change: root on a server."""
        return "root" if self.system else None

    # -- the tree ------------------------------------------------------------------------

    def server_entries(self) -> list[Entry]:
        admin = self.admin
        return [
            Entry(self.root, admin, admin, 0o755),
            Entry(self.bin, admin, admin, 0o755),
            Entry(self.src, admin, admin, 0o755),
            Entry(self.root / "wallet", admin, admin, 0o755),
            Entry(self.root / "pool", admin, admin, 0o755),
            Entry(self.root / "coin", admin, admin, 0o755),
            # o+x only: each pool user reaches its own web/<prefix>/, lists nothing.
            Entry(self.web, admin, self.web_user, 0o751),
            Entry(self.backup, admin, admin, 0o700),
            Entry(self.log, admin, admin, 0o755),
        ]

    def coin_entries(self, prefix: str) -> list[Entry]:
        admin, daemon, pool = self.admin, self.daemon_user(prefix), self.pool_user(prefix)
        return [
            Entry(self.bin_dir(prefix), admin, daemon, 0o750),
            Entry(self.src_dir(prefix), self.build_user, self.build_user, 0o700),
            Entry(self.wallet_dir(prefix), daemon, daemon, 0o700),
            # The web user may open the SQLite database files by name (0640, their group
            # handed down by setgid) and nothing else: no listing, everything else 0600.
            Entry(self.pool_dir(prefix), pool, self.web_user or pool,
                  0o2710 if self.system else 0o700),
            Entry(self.coin_dir(prefix), admin, pool, 0o750),
            # setgid: the status file the engine writes belongs to the web user's group.
            Entry(self.public_dir(prefix), pool, self.web_user, 0o2750 if self.system
                  else 0o750),
        ]


def local_owner() -> tuple[str, str]:
    """The user and group a local install belongs to: the caller's."""
    return getpass.getuser(), grp.getgrgid(os.getegid()).gr_name
