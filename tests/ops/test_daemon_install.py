"""Getting a coin's daemon into bin/<prefix>/: from a Debian package, from an operator's
binary, and built from git by the unprivileged build user.

The git tests build a small local repository as throwaway system users created for the
test (root only: skipped otherwise, failed under CI=true); they prove the build ran as the
build user, that the result is root-owned and not writable or setuid, that a failed build
keeps the previous binary, and that a build cannot make root copy a file it links to.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from multipool.ops import changes
from multipool.ops.changes import Change
from multipool.ops.commands import run_command
from multipool.ops.daemon_install import InstallError, install_daemon, installed_binary
from multipool.ops.layout import Layout

BUILD = ("./build.sh", "test -x out/coind")
BUILD_SH = """#!/bin/sh
set -e
id -u > built-by
mkdir -p out
printf '#!/bin/sh\\necho coind %s\\n' "$(cat version)" > out/coind
chmod 0755 out/coind
"""
FAILING_BUILD_SH = """#!/bin/sh
echo "compile error: $(cat version)" >&2
exit 1
"""
HOSTILE_BUILD_SH = """#!/bin/sh
set -e
mkdir -p out
ln -sf /etc/shadow out/coind
"""


def require_root() -> None:
    if os.geteuid() == 0:
        return
    reason = "needs root: creates system users and gives files to them"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI runs as root and must not skip this")
    pytest.skip(reason)


def apply(plan: list[Change]) -> list[object]:
    return [change.apply() for change in plan]


@dataclass(frozen=True)
class ThrowawayLayout(Layout):
    """A system layout whose build user is a throwaway user instead of multipool-build."""

    builder: str = ""

    @property
    def build_user(self) -> str | None:
        return self.builder


@dataclass(frozen=True)
class Server:
    layout: ThrowawayLayout
    prefix: str
    builder: str
    daemon: str
    work: Path


def git(repo: Path, *args: str) -> str:
    return run_command(["git", "-c", "user.name=test", "-c", "user.email=test@example.org",
                        *args], cwd=repo).stdout.strip()


def commit_source(repo: Path, build_sh: str, version: str, *, tag: str | None = None) -> str:
    (repo / "build.sh").write_text(build_sh)
    (repo / "build.sh").chmod(0o755)
    (repo / "version").write_text(version + "\n")
    git(repo, "add", "build.sh", "version")
    git(repo, "commit", "--quiet", "-m", version)
    if tag:
        git(repo, "tag", "-a", tag, "-m", tag)  # annotated: its commit is the peeled id
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path sits under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="mpt-daemon-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def server(work: Path) -> Iterator[Server]:
    """A system tree in ``work`` with a throwaway build user and coin daemon user."""
    require_root()
    for tool in ("useradd", "userdel", "setpriv", "git"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (util-linux, passwd and git are in make setup)")
    prefix = f"mpt{uuid.uuid4().hex[:6]}"
    builder, daemon = f"{prefix}b", f"{prefix}d"
    created: list[str] = []
    try:
        for user in (builder, daemon):
            run_command(["useradd", "--system", "--user-group", "--no-create-home",
                         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", user])
            created.append(user)
        layout = ThrowawayLayout(root=work / "opt", mode="system", builder=builder)
        for entry in layout.server_entries() + layout.coin_entries(prefix):
            if entry.path in (layout.pool_dir(prefix), layout.coin_dir(prefix),
                              layout.public_dir(prefix), layout.web):
                continue  # the pool and web users' own: these tests do not need them
            apply(changes.directory(entry.path, owner=entry.owner, group=entry.group,
                                    mode=entry.mode))
        yield Server(layout, prefix, builder, daemon, work)
    finally:
        for user in created:
            subprocess.run(["userdel", user], check=False, capture_output=True)
            subprocess.run(["groupdel", user], check=False, capture_output=True)


@pytest.fixture
def repo(work: Path) -> Path:
    """The coin's upstream: a local git repository owned by root, readable by all."""
    path = work / "coin"
    path.mkdir(mode=0o755)
    git(path, "init", "--quiet", "--initial-branch=main")
    return path


# -- git ----------------------------------------------------------------------------------

def test_git_build_runs_as_the_build_user_and_installs_a_root_owned_binary(
        server: Server, repo: Path) -> None:
    layout, prefix = server.layout, server.prefix
    v1 = commit_source(repo, BUILD_SH, "v1", tag="v1")
    steps: list[str] = []
    plan = install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                          ref="v1", build=BUILD, on_step=steps.append)
    assert [(c.operation, c.summary) for c in plan] == [
        ("build.git", f"build v1 ({v1[:7]}) and install bin/{prefix}/coind")]

    assert apply(plan) == [v1]

    assert steps == ["clone", f"checkout v1 ({v1[:7]})", "build step 1/2: ./build.sh",
                     "build step 2/2: test -x out/coind", "install"]
    # The build ran as the build user, not as root.
    build_uid = pwd.getpwnam(server.builder).pw_uid
    assert build_uid != 0
    assert int((layout.src_dir(prefix) / "built-by").read_text()) == build_uid
    # The binary: root:<prefix>d 0750, a regular file, never setuid/setgid.
    binary = installed_binary(layout, prefix, "out/coind")
    assert binary == layout.bin_dir(prefix) / "coind"
    st = binary.lstat()
    assert stat.S_ISREG(st.st_mode)
    assert (st.st_uid, st.st_gid) == (0, grp.getgrnam(server.daemon).gr_gid)
    assert stat.S_IMODE(st.st_mode) == 0o750
    assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID)
    # ...which the daemon user can run but not change, nor put anything beside it.
    assert run_command([str(binary)], user=server.daemon).stdout == "coind v1\n"
    for argv in (["sh", "-c", f": > {binary}"], ["touch", str(layout.bin_dir(prefix) / "x")]):
        assert run_command(argv, user=server.daemon, check=False).returncode != 0

    # Installed: the same request, and a branch naming the same commit, change nothing.
    assert install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                          ref="v1", build=BUILD) == []
    assert install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                          ref="main", build=BUILD) == []
    # Other build steps are another build.
    assert [c.operation for c in install_daemon(
        layout, prefix, source="git", binary="out/coind", git=str(repo), ref="v1",
        build=("./build.sh",))] == ["build.git"]

    # The branch moves to a commit whose build fails: a clear error, previous binary kept.
    before = binary.read_bytes()
    broken = commit_source(repo, FAILING_BUILD_SH, "v2")
    plan = install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                          ref="main", build=BUILD)
    assert [c.summary for c in plan] == [
        f"build main ({broken[:7]}) and install bin/{prefix}/coind (installed: {v1[:7]})"]
    with pytest.raises(InstallError) as failed:
        apply(plan)
    message = str(failed.value)
    assert message.startswith(f"build step 1/2 `./build.sh` failed with exit code 1 in "
                              f"{layout.src_dir(prefix)} (main, {broken[:7]}); "
                              f"bin/{prefix}/coind is unchanged:\n")
    assert message.endswith("compile error: v2")
    assert binary.read_bytes() == before
    assert binary.lstat().st_ino == st.st_ino
    assert not [p.name for p in layout.bin_dir(prefix).iterdir()
                if p.name not in ("coind", ".coind.build.json")]
    # What is installed is still v1, so asking for v1 again changes nothing.
    assert install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                          ref="v1", build=BUILD) == []

    # A repaired build on the branch is fetched, built and swapped in.
    fixed = commit_source(repo, BUILD_SH, "v3")
    steps.clear()
    assert apply(install_daemon(layout, prefix, source="git", binary="out/coind",
                                git=str(repo), ref="main", build=BUILD,
                                on_step=steps.append)) == [fixed]
    assert steps[0] == "fetch"
    assert run_command([str(binary)], user=server.daemon).stdout == "coind v3\n"
    assert stat.S_IMODE(binary.lstat().st_mode) == 0o750


@pytest.mark.parametrize("ref", [None, "commit", "short commit"])
def test_git_ref_may_be_the_default_branch_or_a_commit(server: Server, repo: Path,
                                                      ref: str | None) -> None:
    layout, prefix = server.layout, server.prefix
    v1 = commit_source(repo, BUILD_SH, "v1")
    commit_source(repo, BUILD_SH, "v2")
    wanted = {"commit": v1, "short commit": v1[:10]}.get(ref or "")
    plan = install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                          ref=wanted, build=BUILD)
    label = wanted or "HEAD"
    expected = v1 if wanted else git(repo, "rev-parse", "HEAD")
    assert [c.summary for c in plan] == [
        f"build {label} ({expected[:7]}) and install bin/{prefix}/coind"]
    assert apply(plan) == [expected]
    binary = installed_binary(layout, prefix, "out/coind")
    assert run_command([str(binary)], user=server.daemon).stdout == (
        "coind v1\n" if wanted else "coind v2\n")
    assert install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                          ref=wanted, build=BUILD) == []


def test_build_user_can_read_nothing_else_of_the_tree(server: Server, repo: Path) -> None:
    layout, prefix = server.layout, server.prefix
    commit_source(repo, BUILD_SH, "v1", tag="v1")
    apply(install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                         ref="v1", build=BUILD))
    src = layout.src_dir(prefix).stat()
    assert (src.st_uid, stat.S_IMODE(src.st_mode)) == (pwd.getpwnam(server.builder).pw_uid,
                                                        0o700)
    wallet = layout.wallet_dir(prefix) / "wallet.dat"
    wallet.write_text("keys")
    os.chown(wallet, pwd.getpwnam(server.daemon).pw_uid, grp.getgrnam(server.daemon).gr_gid)
    wallet.chmod(0o600)
    # The daemon user reads its wallet (the check below is not failing for another reason).
    assert run_command(["cat", str(wallet)], user=server.daemon).stdout == "keys"
    for argv in (["cat", str(wallet)], ["ls", str(layout.wallet_dir(prefix))],
                 ["ls", str(layout.bin_dir(prefix))], ["ls", str(layout.backup)]):
        result = run_command(argv, user=server.builder, check=False)
        assert result.returncode != 0, argv
        assert "Permission denied" in result.stderr


def test_a_build_cannot_make_root_copy_a_file_it_links_to(server: Server,
                                                          repo: Path) -> None:
    layout, prefix = server.layout, server.prefix
    commit_source(repo, HOSTILE_BUILD_SH, "v1", tag="v1")
    plan = install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                          ref="v1", build=("./build.sh",))
    with pytest.raises(InstallError, match="symbolic link") as refused:
        apply(plan)
    assert str(refused.value).startswith(
        f"the build did not produce {layout.src_dir(prefix)}/out/coind: ")
    assert not (layout.bin_dir(prefix) / "coind").exists()
    assert os.listdir(layout.bin_dir(prefix)) == []


def test_git_settings_are_refused_before_anything_runs(server: Server, repo: Path) -> None:
    layout, prefix = server.layout, server.prefix
    commit_source(repo, BUILD_SH, "v1", tag="v1")
    with pytest.raises(InstallError, match="'nope' is not a tag, branch or commit of"):
        install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                       ref="nope", build=BUILD)
    with pytest.raises(InstallError, match=r"daemon.binary '../etc/passwd' must be a path"):
        install_daemon(layout, prefix, source="git", binary="../etc/passwd", git=str(repo),
                       ref="v1", build=BUILD)
    with pytest.raises(InstallError, match=re.escape("invalid daemon.git URL '--upload-pack=x'")):
        install_daemon(layout, prefix, source="git", binary="out/coind",
                       git="--upload-pack=x", ref="v1", build=BUILD)
    with pytest.raises(InstallError, match=re.escape("invalid daemon.ref 'v1:refs/heads/x'")):
        install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                       ref="v1:refs/heads/x", build=BUILD)
    with pytest.raises(InstallError, match="build step 'make \"' cannot be split"):
        install_daemon(layout, prefix, source="git", binary="out/coind", git=str(repo),
                       ref="v1", build=('make "',))
    assert list(layout.src_dir(prefix).iterdir()) == []


def test_a_local_install_run_by_root_does_not_build(tmp_path: Path, repo: Path) -> None:
    require_root()
    commit_source(repo, BUILD_SH, "v1", tag="v1")
    with pytest.raises(InstallError, match="refusing to build a daemon from source as root"):
        install_daemon(Layout(tmp_path, mode="local"), "ltc", source="git",
                       binary="out/coind", git=str(repo), ref="v1", build=BUILD)


# -- binary -------------------------------------------------------------------------------

def test_binary_is_copied_root_owned_and_kept_right(server: Server) -> None:
    layout, prefix = server.layout, server.prefix
    source = server.work / "coind"
    source.write_bytes(b"#!/bin/sh\necho one\n")
    source.chmod(0o755)
    plan = install_daemon(layout, prefix, source="binary", binary=str(source))
    assert [(c.operation, c.summary) for c in plan] == [
        ("files.binary", f"copy from {source} (root:{server.daemon} 0750)")]
    apply(plan)
    dest = layout.bin_dir(prefix) / "coind"
    st = dest.lstat()
    assert dest.read_bytes() == source.read_bytes()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
        0, grp.getgrnam(server.daemon).gr_gid, 0o750)
    assert install_daemon(layout, prefix, source="binary", binary=str(source)) == []

    # A setuid bit or a changed source is found and put right.
    dest.chmod(0o4750)
    plan = install_daemon(layout, prefix, source="binary", binary=str(source))
    assert [c.summary for c in plan] == ["mode 4750 -> 0750"]
    apply(plan)
    source.write_bytes(b"#!/bin/sh\necho two\n")
    plan = install_daemon(layout, prefix, source="binary", binary=str(source))
    assert [c.summary for c in plan] == [f"update from {source} (root:{server.daemon} 0750)"]
    apply(plan)
    assert dest.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(dest.lstat().st_mode) == 0o750


def test_binary_copy_in_a_local_install(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "opt", mode="local")
    apply(changes.directory(layout.bin_dir("ltc"), mode=0o750))
    source = tmp_path / "litecoind"
    source.write_bytes(b"\x7fELF fake")
    source.chmod(0o755)
    apply(install_daemon(layout, "ltc", source="binary", binary=str(source)))
    dest = layout.bin_dir("ltc") / "litecoind"
    assert dest.read_bytes() == b"\x7fELF fake"
    assert (dest.stat().st_uid, stat.S_IMODE(dest.stat().st_mode)) == (os.geteuid(), 0o750)
    assert install_daemon(layout, "ltc", source="binary", binary=str(source)) == []


def test_missing_or_unusable_binary_is_refused(tmp_path: Path) -> None:
    layout = Layout(tmp_path, mode="local")
    missing = tmp_path / "nowhere" / "litecoind"
    with pytest.raises(InstallError) as refused:
        install_daemon(layout, "ltc", source="binary", binary=str(missing))
    assert str(refused.value) == f"daemon binary {missing} does not exist"
    plain = tmp_path / "litecoind"
    plain.write_text("not a program")
    plain.chmod(0o644)
    with pytest.raises(InstallError) as refused:
        install_daemon(layout, "ltc", source="binary", binary=str(plain))
    assert str(refused.value) == f"daemon binary {plain} is not an executable file"
    with pytest.raises(InstallError) as refused:
        install_daemon(layout, "ltc", source="binary", binary="litecoind")
    assert str(refused.value) == "daemon binary litecoind is not an absolute path"
    with pytest.raises(InstallError, match="unknown daemon source 'docker'"):
        install_daemon(layout, "ltc", source="docker", binary="litecoind")


# -- package ------------------------------------------------------------------------------

def dpkg_status(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return ""
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                            capture_output=True, text=True, check=False)
    return result.stdout


def require_litecoind_package() -> None:
    if dpkg_status("litecoind").endswith(" installed"):
        return
    reason = "the Debian package litecoind is not installed: run `make setup`"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must not skip this)")
    pytest.skip(reason)


@pytest.mark.parametrize("binary", ["litecoind", ""])
def test_installed_package_gives_a_link_to_its_daemon(tmp_path: Path, binary: str) -> None:
    require_litecoind_package()
    layout = Layout(tmp_path, mode="local")
    apply(changes.directory(layout.bin_dir("ltc"), mode=0o750))
    plan = install_daemon(layout, "ltc", source="package", package="litecoind", binary=binary)
    # Installed already: no apt-get, only the link (to the ELF daemon, not the wrapper
    # script Debian puts in /usr/bin).
    assert [c.operation for c in plan] == ["files.link"]
    apply(plan)
    link = layout.bin_dir("ltc") / "litecoind"
    assert os.readlink(link) == "/usr/lib/litecoin/litecoind"
    assert install_daemon(layout, "ltc", source="package", package="litecoind",
                          binary=binary) == []


def test_package_link_replaces_a_copied_binary(tmp_path: Path) -> None:
    require_litecoind_package()
    layout = Layout(tmp_path, mode="local")
    apply(changes.directory(layout.bin_dir("ltc"), mode=0o750))
    old = layout.bin_dir("ltc") / "litecoind"
    old.write_text("an old build")
    (layout.bin_dir("ltc") / ".litecoind.build.json").write_text("{}")
    plan = install_daemon(layout, "ltc", source="package", package="litecoind",
                          binary="litecoind")
    assert [c.summary for c in plan] == ["replace file with link -> /usr/lib/litecoin/litecoind"]
    apply(plan)
    assert os.readlink(old) == "/usr/lib/litecoin/litecoind"
    assert sorted(os.listdir(layout.bin_dir("ltc"))) == ["litecoind"]


def test_missing_package_is_planned_as_an_apt_install(tmp_path: Path) -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system: no dpkg-query")
    name = f"multipool-test-no-such-package-{uuid.uuid4().hex[:8]}"
    assert dpkg_status(name) == ""
    layout = Layout(tmp_path, mode="local")
    plan = install_daemon(layout, "xyz", source="package", package=name, binary="xyzd")
    assert [(c.operation, c.target, c.summary) for c in plan] == [
        ("packages.apt", name, "install"),
        ("files.link", str(layout.bin_dir("xyz") / "xyzd"),
         f"create -> the xyzd of package {name}"),
    ]  # not applied: tests never run apt
    with pytest.raises(InstallError, match="invalid Debian package name '-oDebug=1'"):
        install_daemon(layout, "xyz", source="package", package="-oDebug=1", binary="xyzd")
