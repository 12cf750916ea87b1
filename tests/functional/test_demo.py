"""The README's main job, `multipool demo`, end to end as a person runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_runs_two_pools_that_record_blocks_then_stops_everything(tmp_path: Path):
    directory = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "multipool.cli", "demo", "--blocks", "3", "--dir",
         str(directory)], capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = re.search(r"each pool recorded at least (\d+) blocks; everything stopped", output)
    assert found and int(found.group(1)) >= 3, output
    # Set up as an operator would: init, then coin add for each pool.
    assert "coin add litecoin --prefix ltca --network regtest" in output
    assert "coin add litecoin --prefix ltcb --network regtest" in output
    # No daemon or engine of the demo is left running.
    leftovers = subprocess.run(["pgrep", "-f", str(directory)], capture_output=True,
                               text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
    # Each pool's daemon and companion node kept their chains in the server tree.
    for prefix in ("ltca", "ltcb"):
        assert (directory / "wallet" / prefix / "regtest").is_dir()
        assert (directory / "wallet" / prefix / "peer" / "regtest").is_dir()
        assert (directory / "coin" / prefix / "coin.toml").is_file()
