"""`init` and `coin add` in system mode refuse, naming the path and the fix, a multipool
its services' users cannot run: a virtualenv made from a Python kept in a 0700 directory
(as pyenv under /root is), or a multipool package there. Run as root (CI is root), with a
real copy of the interpreter, a real virtualenv and a real probe as another user."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import multipool
from multipool.errors import ConfigError
from multipool.ops.reach import check_reachable, identity, interpreter_problem
from multipool.ops.server import server_config_text
from tests.support.requirements import in_ci


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory under /tmp that other users may pass through (pytest's own temporary
    directories are 0700)."""
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("CI runs as root: the system-mode checks must not be skipped")
        pytest.skip("system mode needs root: its checks run as other users")
    base = Path(tempfile.mkdtemp(prefix="multipool-reach-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def others_reach(path: Path) -> bool:
    """Whether users without rights of their own pass every directory down to ``path``."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in Path(path).resolve().parents)


def multipool_cli(python: Path | str, *args: str,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "multipool.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False, env=env, cwd="/")


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def hidden_python(base: Path) -> tuple[Path, Path]:
    """A virtualenv whose Python lives in a 0700 directory (a pyenv under /root): root
    runs it, its services' users could not. It imports this multipool and its
    dependencies through a .pth file."""
    home = base / "roothome"
    home.mkdir(mode=0o700)
    real = Path(os.path.realpath(sys.executable))
    shutil.copy2(real, home / "python3")
    venv = base / "venv"
    subprocess.run([str(home / "python3"), "-m", "venv", "--without-pip", str(venv)],
                   check=True, capture_output=True)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    src = Path(multipool.__file__).parent.parent
    site.joinpath("multipool-src.pth").write_text(
        f"{src}\n{sysconfig.get_paths()['purelib']}\n")
    return venv / "bin" / "python", home


def test_init_refuses_an_interpreter_in_a_private_directory(base: Path,
                                                            hidden_python: tuple[Path, Path]):
    python, home = hidden_python
    root = base / "opt"
    result = multipool_cli(python, "init", "--root", str(root), "--mode", "system",
                           "--unit-dir", str(base), "--nginx-dir", str(base))
    assert result.returncode == 2, result.stderr
    message = one_line(result.stderr)
    assert (f"error: interpreter: the web process runs {python} -m multipool as "
            f"multipool-web, but {home} (drwx------ root:root) does not let it pass "
            "through. Fix: install multipool in a virtualenv whose Python and files every "
            "user may read, outside /root and /home") in message
    assert "Traceback" not in result.stderr
    assert not root.exists()  # refused before any change


def test_coin_add_refuses_it_before_creating_users(base: Path,
                                                   hidden_python: tuple[Path, Path]):
    python, home = hidden_python
    root = base / "opt"
    root.mkdir(mode=0o755)
    (root / "multipool.toml").write_text(server_config_text(root, "system"))
    prefix = "r" + uuid.uuid4().hex[:6]
    result = multipool_cli(python, "coin", "add", "litecoin", "--prefix", prefix,
                           "--network", "regtest", "--root", str(root), "--unit-dir",
                           str(base))
    assert result.returncode == 2, result.stderr
    assert (f"error: interpreter: the pool engine runs {python} -m multipool as "
            f"{prefix}pool, but {home} (drwx------ root:root) does not let it pass "
            "through") in one_line(result.stderr)
    for user in (f"{prefix}d", f"{prefix}pool"):
        with pytest.raises(KeyError):
            pwd.getpwnam(user)
    assert not (root / "coin").exists()


def test_a_multipool_package_in_a_private_directory_is_refused(base: Path):
    if not others_reach(Path(sys.executable)):
        pytest.skip(f"{sys.executable} itself is out of other users' reach here")
    locked = base / "checkout"
    locked.mkdir(mode=0o700)
    shutil.copytree(Path(multipool.__file__).parent, locked / "multipool",
                    ignore=shutil.ignore_patterns("__pycache__"))
    root = base / "opt"
    result = multipool_cli(sys.executable, "init", "--root", str(root), "--mode", "system",
                           "--unit-dir", str(base), "--nginx-dir", str(base),
                           env={**os.environ, "PYTHONPATH": str(locked)})
    assert result.returncode == 2, result.stderr
    assert (f"as multipool-web, but {locked} (drwx------ root:root) does not let it pass "
            "through") in one_line(result.stderr)
    assert not root.exists()


def test_a_file_of_the_package_others_cannot_read_is_named(base: Path):
    if not others_reach(Path(sys.executable)):
        pytest.skip(f"{sys.executable} itself is out of other users' reach here")
    checkout = base / "checkout"
    checkout.mkdir(mode=0o755)
    shutil.copytree(Path(multipool.__file__).parent, checkout / "multipool",
                    ignore=shutil.ignore_patterns("__pycache__"))
    secret = checkout / "multipool" / "ops" / "coins.py"
    secret.chmod(0o600)  # a checkout made with umask 077
    result = multipool_cli(sys.executable, "init", "--root", str(base / "opt"), "--mode",
                           "system", "--unit-dir", str(base), "--nginx-dir", str(base),
                           env={**os.environ, "PYTHONPATH": str(checkout)})
    assert result.returncode == 2, result.stderr
    assert f"but {secret} (-rw------- root:root) does not let it read" \
        in one_line(result.stderr)


def test_the_probe_runs_the_interpreter_as_the_user(base: Path):
    """What the modes do not show (an ACL, a security module, a broken install) shows
    when the interpreter runs as the user: here a stand-in that only root may use."""
    fussy = base / "python"
    fussy.write_text('#!/bin/sh\n[ "$(id -u)" = 0 ] || { echo "not for uid $(id -u)" >&2; '
                     "exit 1; }\n")
    fussy.chmod(0o755)
    if not others_reach(Path(multipool.__file__)):
        pytest.skip("this checkout is out of other users' reach here")
    with pytest.raises(ConfigError) as caught:
        check_reachable("nobody", "the pool engine", executable=str(fussy))
    uid = pwd.getpwnam("nobody").pw_uid
    assert (f"the pool engine runs {fussy} -m multipool as nobody, but as nobody it fails: "
            f"not for uid {uid}. Fix:") in str(caught.value)


def test_this_installation_is_in_reach_where_its_paths_are(base: Path):
    if not (others_reach(Path(sys.executable)) and others_reach(Path(multipool.__file__))):
        pytest.skip("this interpreter or checkout is out of other users' reach here")
    assert interpreter_problem(identity("nobody")) is None
    check_reachable("nobody", "the pool engine")  # the real probe, as nobody
    check_reachable(None, "a local service")  # local mode: the caller runs everything
