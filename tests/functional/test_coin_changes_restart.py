"""An operator edits coin.toml while `multipool run` runs the coin, and runs `coin add
PREFIX`: exactly the services whose configuration changed are restarted (the pool engine
for a pool setting, the daemon too for a daemon setting), the others keep their process,
and the new settings are live. `coin remove` stops the coin's services."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from multipool.config import load_coin_config
from multipool.devnet import free_port
from tests.support.running import stop_run
from tests.support.sockets import listening_ports, processes_with

PREFIX = "ltce"


def multipool(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "multipool.cli", *args],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"multipool {' '.join(args)}:\n{result.stderr}"
    return result


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             runner: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert runner.poll() is None, f"multipool run exited: {runner.communicate()[1][-3000:]}"
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.3)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_coin_add_restarts_what_an_edit_changed(tmp_path: Path):
    root = tmp_path / "server"
    multipool("init", "--root", str(root), "--mode", "local")
    multipool("coin", "add", "litecoin", "--prefix", PREFIX, "--network", "regtest",
              "--root", str(root))
    server_file = root / "multipool.toml"
    server_file.write_text(server_file.read_text().replace("127.0.0.1:8080",
                                                           f"127.0.0.1:{free_port()}"))
    coin_file = root / "coin" / PREFIX / "coin.toml"
    config = load_coin_config(coin_file)
    wallet = root / "wallet" / PREFIX
    add = ("coin", "add", PREFIX, "--root", str(root), "--json")

    def pids() -> dict[str, list[int]]:
        return {"daemon": processes_with(f"-datadir={wallet}"),
                "companion": processes_with(f"-datadir={wallet / 'peer'}"),
                "pool": processes_with(str(coin_file))}

    def changes() -> list[dict[str, str]]:
        return json.loads(multipool(*add).stdout)["changes"]

    def edit(old: str, new: str) -> None:
        text = coin_file.read_text()
        assert old in text
        coin_file.write_text(text.replace(old, new))

    runner = subprocess.Popen([sys.executable, "-m", "multipool.cli", "run", "--root",
                               str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        port = config.stratum.ports[0].port
        wait_for(lambda: listening(port), 180, "the stratum port opens", runner)
        first = pids()
        assert all(len(found) == 1 for found in first.values()), first
        assert changes() == []  # everything runs its current configuration

        # A pool setting: the engine restarts, the daemons keep running.
        edit("fee_percent = 1.0", "fee_percent = 2.0")
        found = changes()
        assert [(c["operation"], c["change"]) for c in found] == [
            ("run.reload", f"restart multipool-{PREFIX}-pool (SIGHUP: it re-reads the "
                           "services)")]
        wait_for(lambda: pids()["pool"] not in ([], first["pool"]), 60,
                 "a new pool engine", runner)
        second = pids()
        assert second["daemon"] == first["daemon"]
        assert second["companion"] == first["companion"]
        assert changes() == []

        # The stratum port: the engine listens on the new one.
        new_port = free_port()
        edit(f"port = {port},", f"port = {new_port},")
        assert [c["operation"] for c in changes()] == ["run.reload"]
        wait_for(lambda: listening(new_port), 120, "the new stratum port opens", runner)
        assert not listening(port)
        third = pids()
        assert third["pool"] != second["pool"] and third["daemon"] == first["daemon"]

        # A daemon setting: its config file is rewritten and the daemon restarts with it
        # (and the engine, whose coin.toml changed); the companion's config is the same.
        onion = free_port()
        edit(f"onion_port = {config.daemon.onion_port}", f"onion_port = {onion}")
        found = changes()
        assert [c["operation"] for c in found] == ["files.file", "run.reload"]
        assert found[1]["change"] == (f"restart multipool-{PREFIX}-daemon, "
                                      f"multipool-{PREFIX}-pool (SIGHUP: it re-reads the "
                                      "services)")
        wait_for(lambda: pids()["daemon"] not in ([], first["daemon"]), 120,
                 "a new daemon", runner)
        wait_for(lambda: ("127.0.0.1", onion) in listening_ports(pids()["daemon"][0]), 60,
                 "the daemon on its new onion-target port", runner)
        assert pids()["companion"] == first["companion"]
        wait_for(lambda: listening(new_port), 120, "the stratum port opens again", runner)

        # Removed: the running supervisor stops the coin's services.
        removed = json.loads(multipool("coin", "remove", PREFIX, "--root", str(root),
                                       "--json").stdout)["changes"]
        assert "run.reload" in [c["operation"] for c in removed]
        wait_for(lambda: not any(pids().values()), 120, "the coin's services stop", runner)
    finally:
        stderr = stop_run(runner)
    assert runner.returncode == 0, stderr[-3000:]
    assert "restarting multipool-ltce-pool, its configuration changed" in stderr
    assert not (root / "run.json").exists()
