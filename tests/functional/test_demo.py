"""The README's main job, `multipool demo`, end to end as a person runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_finds_blocks_and_stops_everything(tmp_path: Path):
    directory = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "multipool.cli", "demo", "--blocks", "3", "--dir",
         str(directory)], capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = re.search(r"the pool found (\d+) blocks; everything stopped", output)
    assert found and int(found.group(1)) >= 3, output
    # No daemon of the demo is left running.
    leftovers = subprocess.run(["pgrep", "-f", str(directory)], capture_output=True,
                               text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
    # Both nodes kept their chains in the demo directory.
    assert (directory / "node0" / "regtest").is_dir()
    assert (directory / "node1" / "regtest").is_dir()
