"""One change to a server tree at a time (ops/treelock.py): `init`, `coin add` and `coin
remove` wait for one another, say which command they wait for, give up after a deadline
without changing anything, and a holder that is killed leaves the tree unlocked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from multipool.config import load_coin_config
from multipool.ops.treelock import HOLDER_FILE, TreeLockedError, tree_lock

HOLD = """
import sys, time
from pathlib import Path
from multipool.ops.treelock import tree_lock
with tree_lock(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold(root: Path, command: str) -> subprocess.Popen[str]:
    """A process holding the tree's lock (as a command in the middle of its changes)
    until it is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root), command],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def multipool(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "multipool.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_holder_waits_names_the_first_and_gives_up_at_the_deadline(
        tmp_path: Path):
    holder = hold(tmp_path, "multipool coin add ltc")
    try:
        told: list[str] = []
        began = time.monotonic()
        with pytest.raises(TreeLockedError, match=r"`multipool coin add ltc` \(pid \d+\) "
                                                  r"kept .* locked for more than 0.6 s"):
            with tree_lock(tmp_path, "second", wait=0.6, on_wait=told.append):
                pytest.fail("the lock was held twice")
        assert time.monotonic() - began >= 0.6
        assert told == [f"waiting for `multipool coin add ltc` (pid {holder.pid}) to "
                        f"finish changing {tmp_path} ..."]
    finally:
        holder.kill()
        holder.wait()
    # Killed in the middle: the kernel released its lock with its descriptors.
    with tree_lock(tmp_path, "third", wait=0):
        assert (tmp_path / HOLDER_FILE).read_text() == f"`third` (pid {os.getpid()})\n"
    assert (tmp_path / HOLDER_FILE).read_text() == ""


def test_coin_add_waits_for_the_change_in_progress_then_applies(tmp_path: Path):
    root = tmp_path / "server"
    init = multipool("init", "--root", str(root), "--mode", "local")
    assert init.wait(120) == 0, init.communicate()
    holder = hold(root, "multipool coin remove ltcx")
    adding = multipool("coin", "add", "litecoin", "--network", "regtest", "--root", str(root),
                       "--json")
    try:
        time.sleep(3)
        assert adding.poll() is None  # waiting, not failed
        assert not (root / "coin" / "ltc").exists()  # nothing read or written yet
        # A dry run changes nothing and does not wait.
        dry = multipool("coin", "add", "litecoin", "--network", "regtest", "--root",
                        str(root), "--dry-run")
        assert dry.wait(120) == 0, dry.communicate()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        out, err = adding.communicate(timeout=120)
    finally:
        holder.kill()
        adding.kill()
    assert adding.returncode == 0, err
    assert f"waiting for `multipool coin remove ltcx` (pid {holder.pid}) to finish " \
           f"changing {root}" in err
    assert json.loads(out)["changes"]
    assert (root / "coin" / "ltc" / "coin.toml").is_file()


def test_two_coin_adds_at_once_take_turns_and_distinct_ports(tmp_path: Path):
    root = tmp_path / "server"
    init = multipool("init", "--root", str(root), "--mode", "local")
    assert init.wait(120) == 0, init.communicate()
    adds = [multipool("coin", "add", "litecoin", "--prefix", prefix, "--network", "regtest",
                      "--root", str(root)) for prefix in ("ltca", "ltcb")]
    for process in adds:
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, err

    def ports(prefix: str) -> set[int | None]:
        c = load_coin_config(root / "coin" / prefix / "coin.toml")
        return {urlsplit(c.daemon.rpc_url).port, c.daemon.p2p_port, c.daemon.onion_port,
                c.daemon.peer_rpc_port, c.stratum.ports[0].port}

    a, b = ports("ltca"), ports("ltcb")
    assert None not in a | b and len(a) == len(b) == 5 and not a & b


def test_a_tree_not_made_yet_is_locked_through_its_parent_and_not_made(tmp_path: Path):
    root = tmp_path / "server"
    holder = hold(root, "multipool init --mode local")
    try:
        with pytest.raises(TreeLockedError, match="another multipool command kept"):
            with tree_lock(root, "second", wait=0.3):
                pytest.fail("the lock was held twice")
        assert not root.exists()  # locking made nothing
    finally:
        holder.kill()
        holder.wait()
