"""Which running services run an older configuration, and the changes that restart them.

Every service carries the fingerprint of what it runs on in its environment
(``MULTIPOOL_CONFIG``, see :func:`~multipool.ops.services.fingerprinted`), so the
configuration a running process was started with is known: for systemd's units from
``/proc/<MainPID>/environ``, for a ``multipool run`` in the foreground from its run file
(``<root>/run.json``), which lists each service's pid and the fingerprint of the spec it
runs it with, also while it waits to start it again.

    plan += restart_changes(layout, coin_services(layout, config))

gives nothing when nothing runs or everything runs its current configuration; else, on a
systemd host, one ``systemctl restart`` per changed unit, and under ``multipool run`` one
signal (SIGHUP) that makes it re-read the services and restart the changed ones itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from multipool.atomicfile import write_atomically
from multipool.errors import PoolError
from multipool.ops import systemd
from multipool.ops.changes import Change
from multipool.ops.commands import run_command
from multipool.ops.layout import Layout
from multipool.ops.services import CONFIG_ENV, ServiceSpec, config_fingerprint

logger = logging.getLogger("multipool.ops.restarts")

RUN_FILE = "run.json"
# A run file is a few hundred bytes per service; anything larger is not one.
MAX_RUN_FILE = 1 << 20
# How long `coin remove` waits for a `multipool run` to stop the coin's services (a
# daemon gets 90 s to flush its chainstate, as under systemd).
STOP_WAIT = 120.0


def running_fingerprint(pid: int) -> str | None:
    """The ``MULTIPOOL_CONFIG`` a process was started with, None when it has none (it was
    started by an older multipool) or is gone."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        key, _, value = entry.partition(b"=")
        if key.decode(errors="replace") == CONFIG_ENV:
            return value.decode(errors="replace")
    return None


def _stale(spec: ServiceSpec, pid: int) -> bool:
    return running_fingerprint(pid) != config_fingerprint(spec)


# -- systemd ------------------------------------------------------------------------------

def systemd_restart_changes(specs: Sequence[ServiceSpec], *,
                            systemctl: Sequence[str] = systemd.SYSTEMCTL) -> list[Change]:
    """One ``systemctl restart`` for each unit that runs and whose main process was
    started with another configuration than its service's now."""
    plan: list[Change] = []
    for spec in specs:
        unit = systemd.unit_name(spec.name)
        state = run_command([*systemctl, "is-active", unit], check=False).stdout.strip()
        if state not in systemd.RUNNING_STATES:
            continue
        shown = run_command([*systemctl, "show", "--property=MainPID", "--value", unit],
                            check=False).stdout.strip()
        pid = int(shown) if shown.isdigit() else 0
        if pid == 0 or not _stale(spec, pid):
            continue
        plan.append(Change("systemd.restart", unit,
                           f"restart (pid {pid} runs an older configuration)",
                           partial(run_command, [*systemctl, "restart", unit])))
    return plan


# -- multipool run ------------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceRun:
    """One service of a running ``multipool run``."""

    pid: int | None  # None while it waits to start (again)
    config: str | None  # the fingerprint of the spec it runs the service with


@dataclass(frozen=True)
class RunState:
    """What a running ``multipool run`` says it runs (its run file)."""

    pid: int
    prefixes: tuple[str, ...] | None  # None: every coin of the server (and the web)
    services: dict[str, ServiceRun]


def run_file(layout: Layout) -> Path:
    return layout.root / RUN_FILE


def write_run_state(path: Path, state: RunState) -> None:
    """Replace the run file (root-owned 0644: it holds only names and pids)."""
    document = {"pid": state.pid,
                "prefixes": None if state.prefixes is None else list(state.prefixes),
                "services": {name: {"pid": run.pid, "config": run.config}
                             for name, run in state.services.items()}}
    write_atomically(path, json.dumps(document, indent=1).encode(), mode=0o644,
                     durable=False)


def _service_run(value: object) -> ServiceRun:
    if not isinstance(value, dict):
        raise ValueError("a service must be an object")
    pid, config = value.get("pid"), value.get("config")
    return ServiceRun(pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                      config if isinstance(config, str) else None)


def _is_multipool_run(pid: int) -> bool:
    """Whether the process is a `multipool run` (a run file left by one that was killed
    may name a pid the system has given to something else since)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"run" in argv and any(b"multipool" in arg for arg in argv)


def read_run_state(layout: Layout) -> RunState | None:
    """The state of the `multipool run` running for this server, None when none runs."""
    path = run_file(layout)
    try:
        with path.open("rb") as file:
            data = json.loads(file.read(MAX_RUN_FILE))
        pid = data["pid"]
        services = data["services"]
        prefixes = data["prefixes"]
        if not (isinstance(pid, int) and isinstance(services, dict)
                and (prefixes is None or isinstance(prefixes, list))):
            raise ValueError("not a run file")
        parsed = {str(name): _service_run(value) for name, value in services.items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: ignored, unreadable: %s", path, exc)
        return None
    if pid <= 0 or not _is_multipool_run(pid):
        return None
    return RunState(pid, None if prefixes is None else tuple(map(str, prefixes)), parsed)


def supervisor_changes(layout: Layout, specs: Sequence[ServiceSpec], *,
                       removed: Sequence[str] = ()) -> list[Change]:
    """When a `multipool run` runs this server: one change that signals it (SIGHUP) to
    re-read the services, naming those it will restart (an older configuration), start
    (new, and among the coins it runs) or stop (``removed``)."""
    state = read_run_state(layout)
    if state is None:
        return []
    restart, start = [], []
    for spec in specs:
        prefix = _prefix_of(spec.name)
        if spec.name in state.services:
            if state.services[spec.name].config != config_fingerprint(spec):
                restart.append(spec.name)
        elif state.prefixes is None or prefix in state.prefixes:
            start.append(spec.name)
    stop = [name for name in removed if name in state.services]
    words = [f"{verb} {', '.join(names)}" for verb, names in (
        ("restart", restart), ("start", start), ("stop", stop)) if names]
    if not words:
        return []

    def reload() -> None:
        with contextlib.suppress(ProcessLookupError):  # it stopped meanwhile: nothing runs
            os.kill(state.pid, signal.SIGHUP)
        if stop:  # what comes next (deleting a wallet) needs them stopped
            _wait_stopped(layout, stop)

    return [Change("run.reload", f"multipool run (pid {state.pid})",
                   "; ".join(words) + " (SIGHUP: it re-reads the services)", reload)]


def _wait_stopped(layout: Layout, names: Sequence[str]) -> None:
    deadline = time.monotonic() + STOP_WAIT
    while True:
        state = read_run_state(layout)
        if state is None or not set(names) & set(state.services):
            return
        if time.monotonic() > deadline:
            raise PoolError(f"multipool run (pid {state.pid}) did not stop "
                            f"{', '.join(names)} within {STOP_WAIT:.0f} s: see its log")
        time.sleep(0.2)


def _prefix_of(name: str) -> str | None:
    """multipool-ltc-pool -> ltc; the web service has none."""
    parts = name.split("-")
    return parts[1] if len(parts) == 3 and parts[0] == "multipool" else None


def restart_changes(layout: Layout, specs: Sequence[ServiceSpec], *,
                    removed: Sequence[str] = (),
                    systemctl: Sequence[str] = systemd.SYSTEMCTL) -> list[Change]:
    """The changes that bring the running services to their current configuration:
    systemd's units (system mode, systemd running) and a `multipool run` of this server."""
    plan: list[Change] = []
    if layout.system and systemd.systemd_running():
        plan += systemd_restart_changes(specs, systemctl=systemctl)
    plan += supervisor_changes(layout, specs, removed=removed)
    return plan
