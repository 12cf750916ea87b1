"""Whether the services' users can run this multipool: its Python and its packages.

The pool engines and the web process run ``sys.executable -m multipool.cli ...`` as their
own unprivileged users. A virtualenv made from a Python kept in root's home (pyenv under
/root, mode 0700), or a checkout there, is out of their reach: every engine then exits at
once, with no log of its own (the exec fails before Python starts). `init` and `coin add`
in system mode refuse such an installation before they change anything:

    check_reachable("ltcpool", "the pool engine")

reads the mode of every directory on the way to the interpreter (each link of its symlink
chain), the standard library, the site-packages and the multipool package, as that user
would be judged (owner, group or other bits), names the first one out of reach, and then
runs the interpreter as that user (setpriv), importing multipool, to be sure.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import multipool
from multipool.errors import ConfigError
from multipool.ops.commands import as_user_argv

# The user whose rights stand for a service user not created yet: one with no rights of
# its own, as the coins' system users have.
NOBODY = "nobody"
PROBE = "import multipool.cli.main"
PROBE_TIMEOUT = 120.0
READ, WRITE, EXECUTE = 4, 2, 1
_NEEDS = {EXECUTE: "pass through", READ | EXECUTE: "list and enter", READ: "read"}


@dataclass(frozen=True)
class Identity:
    """Who the check is for: a uid (None: a user not created yet, who owns nothing) and
    its groups."""

    name: str
    uid: int | None
    gids: frozenset[int]


def identity(user: str) -> Identity:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return Identity(user, None, frozenset())
    return Identity(user, entry.pw_uid, frozenset(os.getgrouplist(user, entry.pw_gid)))


@dataclass(frozen=True)
class Denied:
    path: Path
    need: int  # READ/EXECUTE bits
    mode: int
    owner: str
    group: str

    def __str__(self) -> str:
        return (f"{self.path} ({stat.filemode(self.mode)} {self.owner}:{self.group}) does "
                f"not let it {_NEEDS.get(self.need, 'use it')}")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _allows(st: os.stat_result, need: int, who: Identity) -> bool:
    if who.uid == 0:
        return True
    if who.uid is not None and st.st_uid == who.uid:
        bits = st.st_mode >> 6
    elif st.st_gid in who.gids:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & need == need


def _check(path: Path, need: int, who: Identity) -> Denied | None:
    try:
        st = path.stat()
    except OSError:
        return None  # not there: nothing of ours to judge (the probe will tell)
    if _allows(st, need, who):
        return None
    return Denied(path, need, st.st_mode, _user_name(st.st_uid), _group_name(st.st_gid))


def _on_the_way(path: Path, need: int, who: Identity) -> Denied | None:
    """The first directory above ``path`` (its own, and its real path's) that ``who``
    may not pass, else ``path`` itself if it does not give ``need``."""
    for candidate in (path, Path(os.path.realpath(path))):
        for ancestor in reversed(candidate.parents):
            denied = _check(ancestor, EXECUTE, who)
            if denied is not None:
                return denied
    return _check(path, need, who)


def symlink_chain(path: Path) -> Iterator[Path]:
    """``path``, then each path its symlinks lead to, up to the file itself."""
    current = Path(os.path.abspath(path))
    for _ in range(40):  # the kernel's own limit on links followed
        yield current
        if not current.is_symlink():
            return
        current = Path(os.path.normpath(current.parent / os.readlink(current)))


def interpreter_problem(who: Identity, executable: str = sys.executable) -> Denied | None:
    """The first thing on the way to the interpreter, its standard library, its
    site-packages and the multipool package that ``who`` cannot use, else None."""
    for link in symlink_chain(Path(executable)):
        denied = _on_the_way(link, EXECUTE, who)
        if denied is not None:
            return denied
    paths = sysconfig.get_paths()
    package = Path(multipool.__file__).parent
    for directory in (paths["stdlib"], paths["purelib"], paths["platlib"], package):
        denied = _on_the_way(Path(directory), READ | EXECUTE, who)
        if denied is not None:
            return denied
    for source in sorted(package.rglob("*")):
        denied = _check(source, READ | EXECUTE if source.is_dir() else READ, who)
        if denied is not None:
            return denied
    return None


FIX = ("install multipool in a virtualenv whose Python and files every user may read, "
       "outside /root and /home, e.g. `/usr/bin/python3 -m venv /opt/multipool-venv` and "
       "`/opt/multipool-venv/bin/pip install <multipool>`, then run "
       "/opt/multipool-venv/bin/multipool")


def check_reachable(user: str | None, service: str, *, key: str = "interpreter",
                    executable: str = sys.executable) -> None:
    """Refuse (ConfigError) an interpreter or multipool package that ``user`` (who runs
    ``service``) cannot use; ``None`` or root: nothing to check. A user not created yet
    is judged as one with no rights of its own, and probed as ``nobody``."""
    if user is None or user == "root":
        return
    who = identity(user)
    denied = interpreter_problem(who, executable)
    if denied is not None:
        raise ConfigError(f"{service} runs {executable} -m multipool as {user}, but {denied}. "
                          f"Fix: {FIX}, or make that path readable by other users",
                          key=key)
    probe_user = user if who.uid is not None else NOBODY
    try:
        pwd.getpwnam(probe_user)
    except KeyError:
        return  # no such user to probe with: the mode check above is all there is
    try:
        # The chokepoint's as_user_argv, but not run_command: this output is the message.
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            as_user_argv(probe_user, [executable, "-c", PROBE]), capture_output=True,
            text=True, timeout=PROBE_TIMEOUT, check=False, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot run {executable} as {probe_user} to check it: {exc}",
                          key=key) from None
    if result.returncode != 0:
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise ConfigError(f"{service} runs {executable} -m multipool as {user}, but as "
                          f"{probe_user} it fails: {tail or f'exit {result.returncode}'}. "
                          f"Fix: {FIX}", key=key)
