"""How a coin's daemon binary gets into bin/<prefix>/.

    changes = install_daemon(layout, "ltc", source="git", binary="src/litecoind",
                             git="https://github.com/litecoin-project/litecoin",
                             ref="v0.21.4", build=("./autogen.sh", "./configure", "make -j2"))
    for change in changes:
        print(change)   # build.git /opt/multipool/bin/ltc/litecoind: build v0.21.4 (...) and ...
        change.apply()

Three sources, one result: ``bin/<prefix>/<name>``, which the coin's daemon unit runs.

``package``
    ``apt-get install -y PACKAGE`` unless dpkg says it is installed, then a symbolic link
    ``bin/<prefix>/<name>`` to the package's binary (``/usr/lib/litecoin/litecoind``).
``binary``
    An operator-given absolute path, copied to ``bin/<prefix>/<name>``.
``git``
    The coin's source is hostile until proven otherwise. It is fetched into
    ``src/<prefix>/`` and built there by the build user (``multipool-build``), who owns that
    directory and can read nothing else of the tree; root never runs git or a build step
    in it. The built file is then read by root without following any symbolic link the
    build may have planted, and installed atomically (temporary file in bin/<prefix>/,
    owner and mode set, fsync, rename), so a failing build leaves the previous binary in
    place. ``bin/<prefix>/.<name>.build.json`` records what was built (URL, commit, build
    steps, SHA-256 of the binary); when the wanted ref still names that commit and the
    binary still has that hash, there is nothing to do.

Every installed binary is ``root:<prefix>d 0750`` (the caller's, 0750, in local mode), never
setuid. The coin's directories themselves (bin/<prefix>/, src/<prefix>/) are the tree's
job: ``Layout.coin_entries``, created by ``coin add`` before these changes apply.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pwd
import re
import shlex
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from multipool.errors import PoolError
from multipool.ops import changes as ops_changes
from multipool.ops.changes import Change
from multipool.ops.commands import CommandError, run_command
from multipool.ops.layout import Layout

logger = logging.getLogger("multipool.ops.daemon_install")

SOURCES = ("package", "binary", "git")
BINARY_MODE = 0o750
RECORD_MODE = 0o600
# Refuse to install a "binary" larger than this: a build could hand root a huge sparse file.
MAX_BINARY_BYTES = 2 * 1024**3
LS_REMOTE_TIMEOUT = 120.0  # seconds for asking the remote what a ref names
OUTPUT_LINES = 20  # lines of a failed step's output shown in the error
WANTED_REF = "refs/multipool/wanted"
# git's own order for resolving a short ref name (git help revisions).
REF_RULES = ("{}", "refs/{}", "refs/tags/{}", "refs/heads/{}", "refs/remotes/{}",
             "refs/remotes/{}/HEAD")
# Every git call: no credential prompt (nobody is there to answer), and no "dubious
# ownership" refusal when a local repository belongs to another user than the build user.
GIT = ("env", "GIT_TERMINAL_PROMPT=0", "git", "-c", "safe.directory=*",
       "-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main")

# A local repository belonging to another user (root's clone of a coin, tests): git runs
# its upload-pack with a cleaned environment, so "-c safe.directory" must be repeated there.
LOCAL_UPLOAD_PACK = "git -c 'safe.directory=*' upload-pack"

_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_REF_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]*")
_COMMIT_ISH = re.compile(r"[0-9a-f]{7,40}")

OnStep = Callable[[str], object]


class InstallError(PoolError, RuntimeError):
    """A daemon could not be installed; the message names what, where and why."""


def installed_binary(layout: Layout, prefix: str, binary: str) -> Path:
    """The path the coin's daemon unit runs: bin/<prefix>/<basename of binary>."""
    return layout.bin_dir(_checked_prefix(prefix)) / _basename(binary)


def install_daemon(layout: Layout, prefix: str, *, source: str, binary: str,
                   package: str | None = None, git: str | None = None,
                   ref: str | None = None, build: Sequence[str] = (),
                   on_step: OnStep | None = None,
                   timeout: float | None = None) -> list[Change]:
    """Given the coin's [daemon] settings, return the changes that put its binary into
    bin/<prefix>/, none when it is there already.

    ``binary`` is the program's name for ``package`` (empty: the package's name), an
    absolute path for ``binary`` and a path relative to the source tree for ``git``.
    ``on_step`` is called with "clone"/"fetch", "checkout ...", "build step i/n: ...",
    "install" while a git change applies; ``timeout`` bounds each build step (seconds).
    Bad settings raise :class:`InstallError` here, before anything is changed.
    """
    _checked_prefix(prefix)
    if source == "package":
        if not package:
            raise InstallError(f"{prefix}: daemon source 'package' needs daemon.package")
        return _package_changes(layout, prefix, package, binary or package)
    if source == "binary":
        return _binary_changes(layout, prefix, binary)
    if source == "git":
        if not git:
            raise InstallError(f"{prefix}: daemon source 'git' needs daemon.git")
        return _git_changes(layout, prefix, url=git, ref=ref, binary=binary,
                            build=tuple(build), on_step=on_step, timeout=timeout)
    raise InstallError(f"{prefix}: unknown daemon source {source!r} "
                       f"(one of: {', '.join(SOURCES)})")


# -- checks --------------------------------------------------------------------------------

def _checked_prefix(prefix: str) -> str:
    if not prefix or "/" in prefix or prefix in (".", "..") or prefix.startswith("."):
        raise InstallError(f"invalid coin prefix {prefix!r}")
    return prefix


def _basename(binary: str) -> str:
    name = PurePosixPath(binary).name
    if not name or name.startswith("."):
        raise InstallError(f"daemon binary {binary!r} does not name a file")
    return name


def _relative(path: Path, layout: Layout) -> str:
    try:
        return str(path.relative_to(layout.root))
    except ValueError:
        return str(path)


# -- owners, attributes, atomic copy -------------------------------------------------------

def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's content, in hex, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _install_from_fd(source_fd: int, dest: Path, *, owner: str | None, group: str | None,
                     what: str) -> str:
    """Copy an open file to ``dest`` atomically with the binary's owner and mode; return
    the SHA-256 of what was written. ``dest`` is untouched unless everything succeeds."""
    fd, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    digest = hashlib.sha256()
    size = 0
    try:
        os.fchown(fd, ops_changes.uid_of(owner), ops_changes.gid_of(group))
        os.fchmod(fd, BINARY_MODE)
        with os.fdopen(fd, "wb") as out:
            while chunk := os.read(source_fd, 1 << 20):
                size += len(chunk)
                if size > MAX_BINARY_BYTES:
                    raise InstallError(f"{what} is larger than {MAX_BINARY_BYTES} bytes")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, dest)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    ops_changes.fsync_directory(dest.parent)
    return digest.hexdigest()


def _record_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.build.json")


def _forget_build(dest: Path) -> None:
    """A binary not built from git replaced the built one: its record no longer holds."""
    _record_path(dest).unlink(missing_ok=True)


# -- source = binary -----------------------------------------------------------------------

def _binary_changes(layout: Layout, prefix: str, binary: str) -> list[Change]:
    if not binary:
        raise InstallError(f"{prefix}: daemon source 'binary' needs daemon.binary, "
                           "the absolute path of the daemon program")
    source = Path(binary)
    if not source.is_absolute():
        raise InstallError(f"daemon binary {binary} is not an absolute path")
    if not source.exists():
        raise InstallError(f"daemon binary {binary} does not exist")
    if not source.is_file() or not source.stat().st_mode & 0o111:
        raise InstallError(f"daemon binary {binary} is not an executable file")
    dest = installed_binary(layout, prefix, binary)
    owner, group = layout.admin, layout.daemon_user(prefix)

    def copy() -> str:
        with source.open("rb") as handle:
            digest = _install_from_fd(handle.fileno(), dest, owner=owner, group=group,
                                      what=f"daemon binary {binary}")
        _forget_build(dest)
        return digest

    summary = f"copy from {binary} ({ops_changes.describe(owner, group, BINARY_MODE)})"
    if dest.is_symlink() or not dest.exists():
        verb = "replace link: " if dest.is_symlink() else ""
        return [Change("files.binary", str(dest), verb + summary, copy)]
    if not dest.is_file():
        raise InstallError(f"{dest} exists and is not a regular file")
    if sha256_of(dest) != sha256_of(source):
        return [Change("files.binary", str(dest), summary.replace("copy", "update", 1), copy)]
    return ops_changes.attribute_changes("files.binary", dest, owner, group, BINARY_MODE)


# -- source = package ----------------------------------------------------------------------

def _dpkg(argv: list[str]) -> tuple[int, str]:
    try:
        result = run_command(argv, check=False)
    except CommandError as exc:  # dpkg-query is missing: not a Debian system
        raise InstallError(f"cannot ask dpkg about packages ({exc}); daemon source "
                           "'package' needs Debian") from exc
    return result.returncode, result.stdout


def package_installed(package: str) -> bool:
    """Whether dpkg says the package is installed."""
    code, out = _dpkg(["dpkg-query", "-W", "-f=${Status}", package])
    return code == 0 and out.split()[-1:] == ["installed"]


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(magic)) == magic


def package_binary(package: str, binary: str) -> Path:
    """The installed package's program called ``binary`` (an absolute path: itself). Of
    several files by that name, the one ELF executable (Debian's /usr/bin/litecoind is a
    wrapper script; the daemon is /usr/lib/litecoin/litecoind)."""
    if binary.startswith("/"):
        path = Path(binary)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise InstallError(f"daemon binary {binary} (package {package}) does not exist "
                               "or is not executable")
        return path
    name = _basename(binary)
    code, out = _dpkg(["dpkg-query", "-L", package])
    if code != 0:
        raise InstallError(f"package {package} is not installed")
    candidates = []
    for line in out.splitlines():
        path = Path(line.strip())
        if path.name == name and path.is_file() and not path.is_symlink() \
                and path.stat().st_mode & 0o111:
            candidates.append(path)
    if not candidates:
        raise InstallError(f"package {package} has no executable named {name}; set "
                           "daemon.binary to the daemon's absolute path")
    elf = [path for path in candidates if _starts_with(path, b"\x7fELF")]
    chosen = elf if elf else candidates
    if len(chosen) > 1:
        raise InstallError(f"package {package} has several executables named {name} "
                           f"({', '.join(map(str, chosen))}); set daemon.binary to one of "
                           "them")
    return chosen[0]


def _link_changes(link: Path, target: Path) -> list[Change]:
    """A symbolic link ``link`` -> ``target``, replacing a regular file left by another
    source (atomically: the daemon's path is never missing)."""
    if link.exists() and not link.is_symlink():
        if not link.is_file():
            raise InstallError(f"{link} exists and is not a file or link")

        def replace() -> None:
            ops_changes.replace_with_symlink(link, target)
            _forget_build(link)
        return [Change("files.link", str(link), f"replace file with link -> {target}",
                       replace)]
    return ops_changes.symlink(link, target)


def _package_changes(layout: Layout, prefix: str, package: str,
                     binary: str) -> list[Change]:
    if not _PACKAGE_NAME.fullmatch(package):
        raise InstallError(f"invalid Debian package name {package!r}")
    link = installed_binary(layout, prefix, binary)
    if package_installed(package):
        return _link_changes(link, package_binary(package, binary))

    def link_after_install() -> None:
        for change in _link_changes(link, package_binary(package, binary)):
            change.apply()

    return [*ops_changes.apt_packages((package,)),
            Change("files.link", str(link),
                   f"create -> the {_basename(binary)} of package {package}",
                   link_after_install)]


# -- source = git --------------------------------------------------------------------------

def _check_git_settings(url: str, ref: str | None, binary: str,
                        build: tuple[str, ...]) -> list[list[str]]:
    """Refuse settings that could be read as options or escape the source tree; return
    the build steps as argv lists."""
    if url.startswith("-") or any(ch.isspace() for ch in url):
        raise InstallError(f"invalid daemon.git URL {url!r}")
    if ref is not None and (not _REF_NAME.fullmatch(ref) or ".." in ref
                            or ref.endswith((".lock", "/", "."))):
        raise InstallError(f"invalid daemon.ref {ref!r}: a tag, branch or commit")
    relative = PurePosixPath(binary)
    if not binary or relative.is_absolute() or ".." in relative.parts:
        raise InstallError(f"daemon.binary {binary!r} must be a path inside the source "
                           "tree, such as src/litecoind")
    steps = []
    for step in build:
        try:
            argv = shlex.split(step)
        except ValueError as exc:
            raise InstallError(f"build step {step!r} cannot be split: {exc}") from exc
        if not argv:
            raise InstallError(f"build step {step!r} is empty")
        steps.append(argv)
    return steps


def _local(url: str) -> bool:
    """Whether git reaches ``url`` by running upload-pack on this machine."""
    return url.startswith(("/", "file://"))


def _upload_pack(url: str) -> list[str]:
    return [f"--upload-pack={LOCAL_UPLOAD_PACK}"] if _local(url) else []


def _user_exists(user: str | None) -> bool:
    if user is None:
        return True
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _git(args: list[str], *, user: str | None, cwd: Path | None = None,
         timeout: float | None = None, what: str) -> str:
    try:
        result = run_command([*GIT, *args], user=user, cwd=cwd, timeout=timeout,
                             input_text="")
    except CommandError as exc:
        raise InstallError(f"{what} failed: {exc}") from exc
    return result.stdout


def remote_commit(url: str, ref: str | None, *, user: str | None,
                  timeout: float | None = LS_REMOTE_TIMEOUT) -> str:
    """The commit ``ref`` names in the repository at ``url`` now (git ls-remote, as
    ``user``), or ``ref`` itself when it is a commit id that names no ref there."""
    out = _git(["ls-remote", *_upload_pack(url), "--", url], user=user, timeout=timeout,
               what=f"git ls-remote {url}")
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        refs[name.strip()] = sha.strip()
    wanted = ref or "HEAD"
    for rule in REF_RULES:
        name = rule.format(wanted)
        if name in refs:
            return refs.get(f"{name}^{{}}", refs[name])  # an annotated tag: its commit
    if ref is not None and _COMMIT_ISH.fullmatch(ref):
        return ref
    raise InstallError(f"daemon.ref {wanted!r} is not a tag, branch or commit of {url}")


def _read_record(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _open_built(tree: Path, relative: str, uid: int) -> int:
    """Open the built binary for reading without following any symbolic link inside the
    tree (the build may have planted one to /etc/shadow) and check it is a regular,
    executable file of the build user; return the descriptor."""
    where = tree / relative
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    parts = PurePosixPath(relative).parts
    try:
        fd = os.open(tree, flags | os.O_DIRECTORY)
    except OSError as exc:
        raise InstallError(f"cannot open the source tree {tree}: {exc.strerror}") from exc
    try:
        for part in parts[:-1]:
            inner = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        binary_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        reason = exc.strerror
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            reason = "it or a directory on its way is a symbolic link or not a directory"
        raise InstallError(f"the build did not produce {where}: {reason}") from exc
    finally:
        os.close(fd)
    st = os.fstat(binary_fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif st.st_uid != uid:
        problem = f"belongs to uid {st.st_uid}, not to the build user (uid {uid})"
    elif not st.st_mode & 0o111:
        problem = "is not executable"
    if problem:
        os.close(binary_fd)
        raise InstallError(f"built binary {where} {problem}; refusing to install it")
    return binary_fd


def _git_changes(layout: Layout, prefix: str, *, url: str, ref: str | None, binary: str,
                 build: tuple[str, ...], on_step: OnStep | None,
                 timeout: float | None) -> list[Change]:
    steps = _check_git_settings(url, ref, binary, build)
    user = layout.build_user
    if user is None and os.geteuid() == 0:
        raise InstallError(f"{prefix}: refusing to build a daemon from source as root; "
                           "a local install must be run by an unprivileged user "
                           "(or use daemon source 'package' or 'binary')")
    tree = layout.src_dir(prefix)
    dest = installed_binary(layout, prefix, binary)
    owner, group = layout.admin, layout.daemon_user(prefix)
    label = ref or "HEAD"

    # What is wanted now; None when the build user does not exist yet (`init` creates it,
    # possibly earlier in the same plan), in which case nothing can have been built.
    wanted = remote_commit(url, ref, user=user) if _user_exists(user) else None
    record = _read_record(_record_path(dest))
    if (wanted is not None and record is not None
            and dest.is_file() and not dest.is_symlink()
            and record.get("git") == url and record.get("binary") == binary
            and record.get("build") == list(build)
            and str(record.get("commit", "")).startswith(wanted)
            and record.get("sha256") == sha256_of(dest)):
        return ops_changes.attribute_changes("files.binary", dest, owner, group, BINARY_MODE)

    def report(step: str) -> None:
        logger.info("%s: %s", prefix, step)
        if on_step is not None:
            on_step(step)

    def resolve(by_commit: bool) -> str:
        name = f"{ref}^{{commit}}" if by_commit else f"{WANTED_REF}^{{commit}}"
        argv = ["rev-parse", "--verify", "--quiet", name]
        found = run_command([*GIT, *argv], user=user, cwd=tree, check=False, input_text="")
        if found.returncode != 0 and by_commit and ref is not None and len(ref) == 40:
            # A commit no branch or tag reaches: ask for it by id.
            _git(["fetch", "--quiet", *_upload_pack(url), "origin", ref], user=user,
                 cwd=tree, timeout=timeout, what=f"git fetch {url} {ref}")
            found = run_command([*GIT, *argv], user=user, cwd=tree, check=False,
                                input_text="")
        if found.returncode != 0:
            raise InstallError(f"daemon.ref {label!r} is not a commit of {url}")
        return found.stdout.strip()

    def apply() -> str:
        if not _user_exists(user):
            raise InstallError(f"the build user {user} does not exist (run multipool init)")
        now = wanted if wanted is not None else remote_commit(url, ref, user=user)
        # A commit id that names no ref of the remote: fetch everything and look it up.
        by_commit = ref is not None and now == ref
        first = not (tree / ".git").is_dir()
        report("clone" if first else "fetch")
        if first:
            _git(["init", "--quiet"], user=user, cwd=tree, what=f"git init in {tree}")
            _git(["remote", "add", "origin", url], user=user, cwd=tree,
                 what=f"git remote add origin {url}")
        else:
            _git(["remote", "set-url", "origin", url], user=user, cwd=tree,
                 what=f"git remote set-url origin {url}")
        refspecs = ["+refs/heads/*:refs/remotes/origin/*"]
        if not by_commit:
            refspecs.append(f"+{label}:{WANTED_REF}")
        _git(["fetch", "--quiet", "--force", "--tags", *_upload_pack(url), "origin",
              *refspecs], user=user, cwd=tree, timeout=timeout,
             what=f"git fetch {url} into {tree}")
        commit = resolve(by_commit)
        report(f"checkout {label} ({commit[:7]})")
        _git(["checkout", "--quiet", "--force", "--detach", commit], user=user, cwd=tree,
             what=f"git checkout {label} ({commit}) in {tree}")
        for number, argv in enumerate(steps, 1):
            step = build[number - 1]
            report(f"build step {number}/{len(steps)}: {step}")
            try:
                result = run_command(argv, user=user, cwd=tree, timeout=timeout,
                                     check=False, input_text="")
            except CommandError as exc:  # not found, timed out
                raise InstallError(f"build step {number}/{len(steps)} `{step}` failed in "
                                   f"{tree}: {exc}") from exc
            if result.returncode != 0:
                output = (result.stdout or "") + (result.stderr or "")
                tail = "\n".join(output.strip().splitlines()[-OUTPUT_LINES:])
                raise InstallError(
                    f"build step {number}/{len(steps)} `{step}` failed with exit code "
                    f"{result.returncode} in {tree} ({label}, {commit[:7]}); "
                    f"{_relative(dest, layout)} is unchanged"
                    + (f":\n{tail}" if tail else ""))
        report("install")
        built_by = os.geteuid() if user is None else pwd.getpwnam(user).pw_uid
        source_fd = _open_built(tree, binary, built_by)
        try:
            digest = _install_from_fd(source_fd, dest, owner=owner, group=group,
                                      what=f"built binary {tree / binary}")
        finally:
            os.close(source_fd)
        text = json.dumps({"git": url, "ref": ref, "commit": commit, "build": list(build),
                           "binary": binary, "sha256": digest}, indent=2) + "\n"
        for change in ops_changes.file(_record_path(dest), text, owner=owner, group=None,
                                       mode=RECORD_MODE):
            change.apply()
        return commit

    what = f"clone {url}, build {label}" if wanted is None else f"build {label} ({wanted[:7]})"
    summary = f"{what} and install {_relative(dest, layout)}"
    if record is not None and isinstance(record.get("commit"), str) and dest.exists():
        summary += f" (installed: {str(record['commit'])[:7]})"
    return [Change("build.git", str(dest), summary, apply)]
