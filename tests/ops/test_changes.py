"""The idempotent operations on real files: a first call returns the changes, applying
them reaches the wanted state, a second call returns none."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from multipool.ops import changes


def apply_all(found: list[changes.Change]) -> None:
    for change in found:
        change.apply()


def test_directory_is_created_then_left_alone(tmp_path: Path):
    target = tmp_path / "a" / "b"
    first = changes.directory(target, mode=0o700)
    assert [c.operation for c in first] == ["files.directory"]
    assert "create" in first[0].summary and "0700" in first[0].summary
    assert not target.exists()  # planning changes nothing
    apply_all(first)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert changes.directory(target, mode=0o700) == []


def test_directory_mode_is_corrected(tmp_path: Path):
    target = tmp_path / "d"
    target.mkdir(mode=0o777)
    os.chmod(target, 0o777)
    found = changes.directory(target, mode=0o750)
    assert [c.summary for c in found] == ["mode 0777 -> 0750"]
    apply_all(found)
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert changes.directory(target, mode=0o750) == []


def test_a_file_where_a_directory_belongs_is_refused(tmp_path: Path):
    (tmp_path / "x").write_text("")
    with pytest.raises(FileExistsError, match="is not a directory"):
        changes.directory(tmp_path / "x")


def test_file_content_and_mode(tmp_path: Path):
    target = tmp_path / "secret.toml"
    found = changes.file(target, "password = 1\n", mode=0o640)
    assert len(found) == 1 and "create" in found[0].summary
    apply_all(found)
    assert target.read_text() == "password = 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert changes.file(target, "password = 1\n", mode=0o640) == []
    rewrite = changes.file(target, "password = 2\n", mode=0o640)
    assert [c.summary for c in rewrite] == ["rewrite (13 bytes)"]
    apply_all(rewrite)
    assert target.read_text() == "password = 2\n"
    # No temporary file is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.toml"]


def test_a_secret_file_is_never_readable_by_others_while_written(tmp_path: Path):
    """The mode is set on the temporary file before the content goes in."""
    target = tmp_path / "s"
    seen: list[int] = []
    real_fdopen = os.fdopen

    def spying_fdopen(fd, *args, **kwargs):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kwargs)

    os.fdopen = spying_fdopen  # type: ignore[assignment]
    try:
        apply_all(changes.file(target, "x", mode=0o600))
    finally:
        os.fdopen = real_fdopen  # type: ignore[assignment]
    assert seen == [0o600]


def test_symlink_created_repointed_and_refused_over_a_file(tmp_path: Path):
    link = tmp_path / "link"
    apply_all(changes.symlink(link, "/etc/hostname"))
    assert os.readlink(link) == "/etc/hostname"
    assert changes.symlink(link, "/etc/hostname") == []
    found = changes.symlink(link, "/etc/os-release")
    assert found[0].summary == "point to /etc/os-release (was /etc/hostname)"
    apply_all(found)
    assert os.readlink(link) == "/etc/os-release"
    (tmp_path / "plain").write_text("")
    with pytest.raises(FileExistsError, match="not a symbolic link"):
        changes.symlink(tmp_path / "plain", "/etc/hostname")


def test_installed_package_needs_no_change():
    # dpkg itself is always installed on Debian; the name below never is.
    assert changes.apt_packages(("dpkg",)) == []
    found = changes.apt_packages(("dpkg", "multipool-no-such-package"))
    assert [(c.operation, c.target) for c in found] == [
        ("packages.apt", "multipool-no-such-package")]


def test_run_command_passes_the_environment_and_masks_secrets():
    from multipool.ops.commands import CommandError, run_command

    result = run_command(["sh", "-c", 'echo "$FOO"'], env={"FOO": "bar", "PATH": "/usr/bin:/bin"})
    assert result.stdout == "bar\n"
    with pytest.raises(CommandError) as info:
        run_command(["sh", "-c", "echo hunter2; exit 3", "hunter2"], secrets=["hunter2"])
    assert info.value.returncode == 3
    assert "hunter2" not in str(info.value)
    assert "`sh -c echo ******; exit 3 ******` failed with exit code 3" in str(info.value)
