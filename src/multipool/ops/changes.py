"""Idempotent operations: each reads what is there, compares it with what is wanted and
returns the changes needed, an empty list when the state is right already.

    changes = directory(Path("/opt/multipool/pool/ltc"), owner="ltcpool", mode=0o700)
    for change in changes:
        print(change)      # files.directory /opt/multipool/pool/ltc: create (ltcpool, 0700)
        change.apply()

A change only describes and applies; nothing is read again at apply time beyond what the
change needs, so a plan shown with ``--dry-run`` is the plan applied. A failure half-way
leaves the changes applied so far in place, and the same command finds the rest to do.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from multipool.atomicfile import write_atomically
from multipool.ops.commands import run_command


@dataclass(frozen=True)
class Change:
    """One step that brings one resource to its wanted state."""

    operation: str  # "files.directory", "users.system_user", ...
    target: str  # the path, user or unit it changes
    summary: str  # what changes, for people: "create (ltcd:ltcd 0700)"
    apply: Callable[[], object] = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.operation} {self.target}: {self.summary}"


def uid_of(user: str | None) -> int:
    """The uid of a user name; -1 (leave as is, for chown) for None."""
    return -1 if user is None else pwd.getpwnam(user).pw_uid


def gid_of(group: str | None) -> int:
    """The gid of a group name; -1 (leave as is, for chown) for None."""
    return -1 if group is None else grp.getgrnam(group).gr_gid


def _owner_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def describe(owner: str | None, group: str | None, mode: int) -> str:
    who = ":".join(part for part in (owner, group) if part)
    return f"{who} {mode:04o}" if who else f"{mode:04o}"


def attribute_changes(operation: str, path: Path, owner: str | None, group: str | None,
                       mode: int) -> list[Change]:
    """Owner, group and mode of an existing path, as changes where they differ. The mode
    compares exactly: a setuid or setgid bit is a difference too."""
    st = path.lstat()
    changes: list[Change] = []
    now_owner, now_group = _owner_name(st.st_uid), _group_name(st.st_gid)
    if (owner is not None and now_owner != owner) or (group is not None and now_group != group):
        changes.append(Change(
            operation, str(path),
            f"owner {now_owner}:{now_group} -> {owner or now_owner}:{group or now_group}",
            lambda: os.chown(path, uid_of(owner), gid_of(group), follow_symlinks=False)))
    if st.st_mode & 0o7777 != mode:
        changes.append(Change(operation, str(path), f"mode {st.st_mode & 0o7777:04o} -> {mode:04o}",
                              lambda: os.chmod(path, mode)))
    return changes


def fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable: the directory entry reaches the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def directory(path: Path, *, owner: str | None = None, group: str | None = None,
              mode: int = 0o755) -> list[Change]:
    """A directory with this owner, group and mode (None: leave as is)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise FileExistsError(f"{path} exists and is not a directory")
    if not path.exists():
        def create() -> None:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(path, uid_of(owner), gid_of(group))
            os.chmod(path, mode)
        return [Change("files.directory", str(path), f"create ({describe(owner, group, mode)})",
                       create)]
    return attribute_changes("files.directory", path, owner, group, mode)


def file(path: Path, content: str | bytes, *, owner: str | None = None,
         group: str | None = None, mode: int = 0o644) -> list[Change]:
    """A regular file with exactly this content, owner, group and mode. Written to a
    temporary file in the same directory with its final owner and mode, then renamed over
    the old one: readers never see half a file, and a secret is never world-readable."""
    data = content.encode() if isinstance(content, str) else content
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise FileExistsError(f"{path} exists and is not a regular file")

    def write() -> None:
        write_atomically(path, data, mode=mode, uid=uid_of(owner), gid=gid_of(group))

    if not path.exists():
        return [Change("files.file", str(path),
                       f"create ({describe(owner, group, mode)}, {len(data)} bytes)", write)]
    if path.read_bytes() != data:
        return [Change("files.file", str(path), f"rewrite ({len(data)} bytes)", write)]
    return attribute_changes("files.file", path, owner, group, mode)


def replace_with_symlink(path: Path, target: Path | str) -> None:
    """Put a symbolic link to ``target`` at ``path`` in one rename: whatever was there (a
    link or a file) is replaced, and ``path`` is never missing meanwhile."""
    temporary = path.with_name(f".{path.name}.link")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, path)


def symlink(path: Path, target: Path | str) -> list[Change]:
    """A symbolic link at ``path`` pointing to ``target``."""
    wanted = str(target)
    if path.is_symlink():
        current = os.readlink(path)
        if current == wanted:
            return []

        return [Change("files.link", str(path), f"point to {wanted} (was {current})",
                       partial(replace_with_symlink, path, wanted))]
    if path.exists():
        raise FileExistsError(f"{path} exists and is not a symbolic link")
    return [Change("files.link", str(path), f"create -> {wanted}",
                   lambda: path.symlink_to(wanted))]


def system_user(name: str, *, home: Path, groups: tuple[str, ...] = ()) -> list[Change]:
    """A system user with its own group of the same name, no login shell, no password,
    ``home`` as its home (not created), and membership of ``groups``."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        argv = ["useradd", "--system", "--user-group", "--home-dir", str(home),
                "--no-create-home", "--shell", "/usr/sbin/nologin"]
        if groups:
            argv += ["--groups", ",".join(groups)]
        return [Change("users.system_user", name,
                       "create" + (f" (groups {', '.join(groups)})" if groups else ""),
                       lambda: run_command([*argv, name]))]
    changes: list[Change] = []
    member_of = {g.gr_name for g in grp.getgrall() if name in g.gr_mem}
    missing = [g for g in groups if g not in member_of]
    if missing:
        changes.append(Change("users.system_user", name, f"add to {', '.join(missing)}",
                              lambda: run_command(["usermod", "--append", "--groups",
                                                   ",".join(missing), name])))
    if entry.pw_dir != str(home):
        changes.append(Change("users.system_user", name, f"home {entry.pw_dir} -> {home}",
                              lambda: run_command(["usermod", "--home", str(home), name])))
    return changes


def _missing_packages(names: tuple[str, ...]) -> list[str]:
    missing = []
    for name in names:
        result = run_command(["dpkg-query", "-W", "-f=${Status}", name], check=False)
        if result.returncode != 0 or result.stdout.split()[-1:] != ["installed"]:
            missing.append(name)
    return missing


def apt_packages(names: tuple[str, ...]) -> list[Change]:
    """Debian packages installed with apt-get (one change for all that are missing)."""
    missing = _missing_packages(names)
    if not missing:
        return []

    def install() -> None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run_command(["apt-get", "update", "-q"], env=env, timeout=600)
        run_command(["apt-get", "install", "-y", "-q", *missing], env=env, timeout=1800)
    return [Change("packages.apt", " ".join(missing), "install", install)]
