"""The parts both web server sites share: the marked block in the operator's site file
and the snapshot that rolls a rejected site back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multipool.errors import ConfigError
from multipool.ops import sites

BEGIN, END = sites.BEGIN, sites.END


def test_merge_replaces_only_the_block_and_keeps_its_indent(tmp_path: Path) -> None:
    current = "\n".join([
        "# the operator's comment", "server {", "    listen 80;", f"    {BEGIN}",
        "    server_name old.example;", "    include /x;", f"    {END}",
        "    listen 443 ssl; # managed by Certbot", "}", "server {", "  return 404;", "}"])
    merged = sites.merge_block(current, ["server_name new.example;", "include /y;"],
                               path=tmp_path / "site")
    assert merged.splitlines() == [
        "# the operator's comment", "server {", "    listen 80;", f"    {BEGIN}",
        "    server_name new.example;", "    include /y;", f"    {END}",
        "    listen 443 ssl; # managed by Certbot", "}", "server {", "  return 404;", "}"]
    # Idempotent: the same block again changes nothing.
    assert sites.merge_block(merged, ["server_name new.example;", "include /y;"],
                             path=tmp_path / "site") == merged


def test_a_marker_line_reworded_by_hand_is_still_found(tmp_path: Path) -> None:
    current = f"<VirtualHost *:80>\n# BEGIN multipool (mine)\nServerName a\n{END}\n" \
              "</VirtualHost>\n"
    merged = sites.merge_block(current, ["ServerName b"], path=tmp_path / "site")
    assert merged == f"<VirtualHost *:80>\n{BEGIN}\nServerName b\n{END}\n</VirtualHost>\n"


@pytest.mark.parametrize("text", [
    "server {\n    server_name a;\n}\n",                              # no markers
    f"{BEGIN}\nserver_name a;\n",                                    # no END
    f"{END}\nserver_name a;\n{BEGIN}\n",                             # END before BEGIN
    f"{BEGIN}\na\n{END}\n{BEGIN}\nb\n{END}\n",                       # two blocks
])
def test_missing_or_broken_markers_are_refused_naming_the_file(tmp_path: Path,
                                                              text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sites.merge_block(text, ["server_name b;"], path=tmp_path / "site")
    assert caught.value.file == str(tmp_path / "site")
    assert "delete the file" in str(caught.value)


def test_snapshot_restores_content_mode_and_links(tmp_path: Path) -> None:
    kept, new = tmp_path / "kept.conf", tmp_path / "new.conf"
    kept.write_text("old\n")
    os.chmod(kept, 0o640)
    link, new_link = tmp_path / "link", tmp_path / "new-link"
    link.symlink_to("kept.conf")
    snapshot = sites.Snapshot.take([kept, new], [link, new_link])
    kept.write_text("changed\n")
    os.chmod(kept, 0o644)
    new.write_text("made\n")
    link.unlink()
    link.symlink_to("new.conf")
    new_link.symlink_to("new.conf")
    done = snapshot.restore()
    assert kept.read_text() == "old\n" and kept.stat().st_mode & 0o777 == 0o640
    assert not new.exists() and not new_link.is_symlink()
    assert os.readlink(link) == "kept.conf"
    assert set(done) == {f"{kept} restored", f"{new} removed", f"{new_link} removed",
                         f"{link} points to kept.conf again"}
    assert snapshot.restore() == []  # nothing left to undo
