"""The README's main job, `multipool demo`, end to end as a person runs it, with its
output going to a pipe (as `make demo | tee demo.log` or into a file): progress lines
arrive while it runs, not only once it stops."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path


def test_demo_runs_two_pools_that_record_blocks_then_stops_everything(tmp_path: Path):
    directory = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "multipool.cli", "demo", "--blocks", "3", "--dir",
         str(directory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Each stdout line with whether the demo was still running when it arrived.
    lines: list[tuple[str, bool]] = []
    stderr: list[str] = []
    readers = [threading.Thread(target=lambda: lines.extend(
                   (line.rstrip("\n"), process.poll() is None) for line in process.stdout)),
               threading.Thread(target=lambda: stderr.extend(process.stderr))]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for reader in readers:
            reader.join(timeout=10)
    output = "\n".join(line for line, _ in lines) + "".join(stderr)
    assert process.returncode == 0, output
    found = re.search(r"each pool recorded at least (\d+) blocks; everything stopped", output)
    assert found and int(found.group(1)) >= 3, output
    # Set up as an operator would: init, then coin add for each pool.
    assert "coin add litecoin --prefix ltca --network regtest" in output
    assert "coin add litecoin --prefix ltcb --network regtest" in output
    # Plain progress lines, each while the demo still ran: the web page, each pool's
    # miner, its blocks (in words that count right), with no terminal codes.
    live = [line for line, running in lines if running]
    assert any(re.fullmatch(r"\[\d\d:\d\d:\d\d\] the pools' web page: http://127\.0\.0\.1:"
                            r"\d+/ \(Ctrl-C stops everything\)", line) for line in live), lines
    for prefix in ("ltca", "ltcb"):
        assert any(f"] {prefix}: stratum 127.0.0.1:" in line and "a test miner mines on it"
                   in line for line in live), lines
        counts = [re.search(rf"\] {prefix}: (\d+) (blocks?) recorded$", line)
                  for line in live]
        counted = [(int(m.group(1)), m.group(2)) for m in counts if m]
        assert counted, lines
        assert all(word == ("block" if n == 1 else "blocks") for n, word in counted), counted
    assert not any("\x1b" in line for line, _ in lines)
    # No daemon or engine of the demo is left running.
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", str(directory)], capture_output=True,
                               text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
    # Each pool's daemon and companion node kept their chains in the server tree.
    for prefix in ("ltca", "ltcb"):
        assert (directory / "wallet" / prefix / "regtest").is_dir()
        assert (directory / "wallet" / prefix / "peer" / "regtest").is_dir()
        assert (directory / "coin" / prefix / "coin.toml").is_file()
