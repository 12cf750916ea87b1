"""Systemd units: accepted by systemd itself (`systemd-analyze verify`), hardened to an
exposure of 2.0 or lower (`systemd-analyze security --offline=true`), argv passed to the
program exactly (read back from systemd's own parser), and idempotent installation and
state changes (against a fake systemctl that records what it is asked)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from multipool.config import parse_server_config
from multipool.errors import PoolError
from multipool.ops import systemd
from multipool.ops.layout import Layout
from multipool.ops.services import RpcReady, ServiceSpec
from multipool.ops.web import web_service
from tests.support.requirements import missing

MAX_EXPOSURE = 2.0
SYSTEMD_BINARY = Path("/lib/systemd/systemd")
# What every unit relies on; a missing line weakens every service at once.
HARDENING = [
    "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "PrivateDevices=yes",
    "DevicePolicy=closed", "PrivateMounts=yes", "PrivateUsers=yes", "UMask=0077",
    "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes",
    "ProtectProc=invisible", "ProcSubset=pid", "RestrictNamespaces=yes",
    "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes", "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources", "SystemCallArchitectures=native",
    "CapabilityBoundingSet=", "AmbientCapabilities=", "KeyringMode=private",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
]
# Directives weaker than the strictest setting: each needs a "# why:" line above it.
RELAXED = ("RestrictAddressFamilies=", "SystemCallErrorNumber=", "ProtectHome=read-only",
           "LimitNOFILE=")


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        missing("systemd-analyze", "systemd 252 on Debian 12: apt-get install systemd")
    assert found is not None
    return found


def litecoind() -> str:
    """A real daemon binary for `verify`, which checks that ExecStart's program exists."""
    for candidate in ("/usr/lib/litecoin/litecoind", shutil.which("litecoind")):
        if candidate and Path(candidate).is_file():
            return candidate
    return "/bin/sleep"  # any executable: the unit's hardening does not depend on it


def daemon_spec(root: Path) -> ServiceSpec:
    wallet = root / "wallet" / "ltc"
    return ServiceSpec(
        name="multipool-ltc-daemon", description="litecoin daemon for the ltc pool",
        argv=(litecoind(), f"-datadir={wallet}", f"-conf={wallet / 'litecoin.conf'}",
              "-printtoconsole"),
        working_dir=wallet, user="ltcd", group="ltcd", writable=(wallet,),
        ready=RpcReady("http://127.0.0.1:19443", "pool", "secret"))


def pool_spec(root: Path, python: str = sys.executable) -> ServiceSpec:
    pool = root / "pool" / "ltc"
    return ServiceSpec(
        name="multipool-ltc-pool", description="multipool pool engine for litecoin (ltc)",
        argv=(python, "-m", "multipool.cli", "pool", "serve", "--coin",
              str(root / "coin" / "ltc" / "coin.toml")),
        working_dir=pool, user="ltcpool", group="ltcpool", writable=(pool,),
        after=("multipool-ltc-daemon",), stop_timeout=30.0,
        environment=(("PYTHONUNBUFFERED", "1"),))


def backup_spec(root: Path) -> ServiceSpec:
    # Root (no User=): it reads every coin's config and writes the root-only backup/.
    return ServiceSpec(
        name="multipool-backup", description="multipool backup of every coin",
        argv=(sys.executable, "-m", "multipool.cli", "backup", "--root", str(root)),
        working_dir=root, writable=(root / "backup",), network=False, stop_timeout=120.0)


@pytest.fixture
def units(tmp_path: Path) -> dict[str, str]:
    """The three kinds of unit, by file name, for a server rooted in tmp_path."""
    root = tmp_path / "opt"
    for sub in ("wallet/ltc", "pool/ltc", "coin/ltc", "backup"):
        (root / sub).mkdir(parents=True)
    return {
        "multipool-ltc-daemon.service": systemd.render_service(daemon_spec(root)),
        "multipool-ltc-pool.service": systemd.render_service(pool_spec(root)),
        **systemd.scheduled_units(backup_spec(root), "*-*-* 03:15:00"),
        "multipool-web.service": systemd.render_service(web_spec(root)),
    }


def web_spec(root: Path) -> ServiceSpec:
    """The web process's own spec (ops/web.py), as `init` writes its unit."""
    (root / "web").mkdir(parents=True, exist_ok=True)
    data = {"server": {"root": str(root), "public_host": "pool.example"}}
    return web_service(Layout(root, "system"), parse_server_config(data, "multipool.toml"))


def write_units(directory: Path, units: dict[str, str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in units.items():
        (directory / name).write_text(text)
        paths.append(directory / name)
    return paths


def verify(analyze: str, paths: list[Path]) -> list[str]:
    """`systemd-analyze verify`: exit 0, and no warning about our files (it exits 0 on
    a directive it ignores, with a warning line naming the file)."""
    result = subprocess.run([analyze, "verify", *map(str, paths)], capture_output=True,
                            text=True, timeout=120, check=False)
    output = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(output)
    return [line for line in output if any(p.name in line for p in paths)]


def exposure(analyze: str, path: Path) -> float:
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(path)],
                            capture_output=True, text=True, timeout=120, check=False)
    match = re.search(rf"Overall exposure level for {re.escape(path.name)}: (\d+\.\d+)",
                      result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


# -- systemd accepts and scores the units ---------------------------------------------------

def test_units_pass_systemd_analyze_verify(analyze: str, units: dict[str, str], tmp_path: Path):
    paths = write_units(tmp_path / "units", units)
    assert verify(analyze, paths) == []


def test_verify_catches_a_bad_setting(analyze: str, units: dict[str, str], tmp_path: Path):
    """The check above would notice a directive systemd ignores (it still exits 0)."""
    bad = units["multipool-ltc-daemon.service"].replace("ProtectSystem=strict",
                                                        "ProtectSystem=bogus")
    paths = write_units(tmp_path / "units", {"multipool-ltc-daemon.service": bad})
    assert any("ProtectSystem" in line or "protect system" in line
               for line in verify(analyze, paths))


@pytest.mark.parametrize("name", ["multipool-ltc-daemon.service", "multipool-ltc-pool.service",
                                  "multipool-backup.service", "multipool-web.service"])
def test_exposure_is_at_most_two(analyze: str, units: dict[str, str], tmp_path: Path,
                                 name: str):
    [path] = write_units(tmp_path / "units", {name: units[name]})
    score = exposure(analyze, path)
    print(f"{name}: exposure {score}")
    assert score <= MAX_EXPOSURE


def test_production_pool_engine_scores_lower(analyze: str, tmp_path: Path):
    """With a system Python (not under /root or /home) ProtectHome= stays at yes."""
    text = systemd.render_service(pool_spec(Path("/opt/multipool"), "/usr/bin/python3"))
    assert "ProtectHome=yes" in text.splitlines()
    [path] = write_units(tmp_path / "units", {"multipool-ltc-pool.service": text})
    score = exposure(analyze, path)
    print(f"pool engine with /usr/bin/python3: exposure {score}")
    assert score <= MAX_EXPOSURE


def test_timer_calendar_is_valid(analyze: str):
    result = subprocess.run([analyze, "calendar", "*-*-* 03:15:00"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0 and "Next elapse" in result.stdout


# -- the unit text ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["multipool-ltc-daemon.service", "multipool-ltc-pool.service",
                                  "multipool-backup.service", "multipool-web.service"])
def test_every_hardening_directive_is_there(units: dict[str, str], name: str):
    lines = units[name].splitlines()
    missing = [directive for directive in HARDENING if directive not in lines]
    assert missing == []
    assert lines[0].startswith("# Generated by multipool")


@pytest.mark.parametrize("name", ["multipool-ltc-daemon.service", "multipool-ltc-pool.service",
                                  "multipool-backup.service", "multipool-web.service"])
def test_relaxed_directives_say_why(units: dict[str, str], name: str):
    lines = units[name].splitlines()
    relaxed = [i for i, line in enumerate(lines) if line.startswith(RELAXED)]
    assert relaxed, "every unit relaxes at least the address families"
    for i in relaxed:
        assert lines[i - 1].startswith("# why: "), lines[i]


def test_long_running_service_shape(units: dict[str, str]):
    lines = units["multipool-ltc-pool.service"].splitlines()
    for line in ("Type=exec", "User=ltcpool", "Group=ltcpool", "Restart=on-failure",
                 "RestartSec=15", "StartLimitIntervalSec=600", "StartLimitBurst=10",
                 "TimeoutStopSec=30s", "Environment=PYTHONUNBUFFERED=1", "RemoveIPC=yes",
                 "Wants=multipool-ltc-daemon.service network-online.target",
                 "After=multipool-ltc-daemon.service network-online.target",
                 "WantedBy=multi-user.target", "LimitNOFILE=65536"):
        assert line in lines
    assert not any(line.startswith(("Requires=", "IPAddressDeny=")) for line in lines)
    assert "TimeoutStopSec=90s" in units["multipool-ltc-daemon.service"].splitlines()


def test_web_service_yields_the_cpu_to_the_pool_engines(units: dict[str, str]):
    """Browsing must not slow mining: the web unit runs at a lower priority (nice) and
    a smaller cgroup CPU share than the pool engine, which keeps systemd's defaults."""
    web_lines = units["multipool-web.service"].splitlines()
    assert "Nice=10" in web_lines and "CPUWeight=20" in web_lines
    for name in ("multipool-ltc-pool.service", "multipool-ltc-daemon.service"):
        lines = units[name].splitlines()
        assert not any(line.startswith(("Nice=", "CPUWeight=")) for line in lines), name


@pytest.mark.parametrize(("nice", "weight"), [(-1, None), (20, None), (0, 0), (0, 10001)])
def test_priority_out_of_range_is_refused(tmp_path: Path, nice: int, weight: int | None):
    with pytest.raises(ValueError):
        ServiceSpec(name="x", description="x", argv=("/bin/true",), working_dir=tmp_path,
                    nice=nice, cpu_weight=weight)


def test_oneshot_and_timer_shape(units: dict[str, str]):
    service = units["multipool-backup.service"].splitlines()
    assert "Type=oneshot" in service
    assert not any(line.startswith(("User=", "Restart=", "WantedBy=", "[Install]"))
                   for line in service)  # its timer starts it, as root
    assert "IPAddressDeny=any" in service and "IPAddressAllow=localhost" in service
    timer = units["multipool-backup.timer"].splitlines()
    for line in ("OnCalendar=*-*-* 03:15:00", "Persistent=true",
                 "Unit=multipool-backup.service", "WantedBy=timers.target",
                 "Description=multipool backup of every coin"):
        assert line in timer


def test_home_paths_relax_protect_home(tmp_path: Path):
    spec = pool_spec(Path("/opt/multipool"), "/home/op/venv/bin/python")
    lines = systemd.render_service(spec).splitlines()
    assert "ProtectHome=yes" not in lines
    at = lines.index("ProtectHome=read-only")
    assert lines[at - 1].startswith("# why: ")


def test_no_user_line_without_a_user(tmp_path: Path):
    text = systemd.render_service(backup_spec(tmp_path))
    assert "\nUser=" not in text and "\nGroup=" not in text and "RemoveIPC" not in text


@pytest.mark.parametrize("spec_change", [
    {"description": "evil\nExecStartPre=/bin/sh -c 'rm -rf /'"},
    {"argv": ("/bin/echo", "line\nExecStartPre=/bin/true")},
    {"argv": ("echo", "relative program")},
    {"argv": ("-/bin/echo",)},
    {"argv": ("/opt/$HOME/bin",)},
    {"argv": ()},
    {"user": "root; rm"},
    {"environment": (("BAD KEY", "x"),)},
    {"working_dir": Path("relative")},
    {"writable": (Path("/opt/x\n[Install]"),)},
    {"stop_timeout": 0.0},
    {"name": "-evil"},
    {"after": ("../other",)},
])
def test_refuses_values_that_would_change_the_unit(tmp_path: Path, spec_change: dict):
    base = {"name": "mp-test", "description": "test", "argv": ("/bin/echo", "x"),
            "working_dir": tmp_path}
    spec = ServiceSpec(**{**base, **spec_change})
    with pytest.raises(ValueError):
        systemd.render_service(spec)


def test_timer_refuses_a_newline():
    with pytest.raises(ValueError):
        systemd.render_timer("mp-backup", "backup", "daily\n[Service]")


# -- ExecStart quoting --------------------------------------------------------------------

# Worked out by hand from systemd.service(5) "Command lines" and systemd.syntax(7)
# "Quoting": words are unquoted with C escapes, "%%" is a literal "%" (specifiers),
# "$$" a literal "$" (variables, expanded when the command runs), a lone ";" separates
# two command lines unless quoted, and quotes or a backslash need quoting and escaping.
QUOTING = [
    ("plain", "plain"),
    ("--coin=/opt/multipool/coin/ltc/coin.toml", "--coin=/opt/multipool/coin/ltc/coin.toml"),
    ("with space", '"with space"'),
    ('say "hi"', r'"say \"hi\""'),
    ("it's", '"it\'s"'),
    ("100%", "100%%"),
    ("%n", "%%n"),
    ("$HOME", '"$$HOME"'),
    ("${X}%n", '"$${X}%%n"'),
    ("a\\b", r'"a\\b"'),
    ("tab\\t", r'"tab\\t"'),
    (";", '";"'),
    ("", '""'),
    ("ünï", '"ünï"'),
]


@pytest.mark.parametrize(("arg", "expected"), QUOTING)
def test_exec_arg_quoting(arg: str, expected: str):
    assert systemd.quote_exec_arg(arg) == expected


def test_exec_line_joins_quoted_args():
    assert systemd.exec_line(["/bin/echo", "a b", "50%", "$x"]) == \
        '/bin/echo "a b" 50%% "$$x"'


def _shell_words(line: str) -> list[str]:
    """Split a command line as systemd's dump prints it (shell_maybe_quote: bare words,
    or double quotes with \\, ", $ and ` backslash-escaped)."""
    words: list[str] = []
    i = 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        word, quoted = [], False
        while i < len(line) and (quoted or line[i] != " "):
            char = line[i]
            if char == '"':
                quoted = not quoted
            elif char == "\\" and quoted:
                i += 1
                word.append(line[i])
            else:
                word.append(char)
            i += 1
        words.append("".join(word))
    return words


@pytest.fixture
def readable_dir() -> Iterator[Path]:
    """A directory the unprivileged `systemd --test` can read (tmp_path is root-only)."""
    with tempfile.TemporaryDirectory(prefix="multipool-units-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def systemd_dump(unit_dir: Path, unit: str) -> list[str]:
    """systemd's own reading of a unit: `systemd --test` loads it with the manager's
    parser and dumps the result (it refuses to run as root, so root drops to nobody)."""
    if not SYSTEMD_BINARY.exists():
        missing(str(SYSTEMD_BINARY))
    argv = [str(SYSTEMD_BINARY), "--test", "--system", f"--unit={unit}", "--no-pager",
            "--log-target=console"]
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        argv = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                "--clear-groups", *argv]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/",
           "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}  # ":": then the usual directories
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                            check=False)
    output = result.stdout + result.stderr
    start = output.find(f"-> Unit {unit}:")
    assert result.returncode == 0 and start >= 0, output[-3000:]
    section = output[start:].splitlines()[1:]
    end = next((i for i, line in enumerate(section) if line.startswith("\t-> Unit ")),
               len(section))
    return [line.strip() for line in section[:end]]


def _dumped(lines: list[str], key: str) -> str:
    return next(line.removeprefix(key) for line in lines if line.startswith(key))


def test_systemd_reads_back_the_exact_argv(analyze: str, readable_dir: Path):
    """Render tricky args, check `verify` accepts them and that systemd's parser stores
    exactly the args, with each "$" still doubled: at run time systemd turns "$$" into
    "$" (systemd.service(5)), so the program receives the original args."""
    args = [arg for arg, _ in QUOTING]
    odd = readable_dir / "odd dir 100% $x"
    odd.mkdir()
    spec = ServiceSpec(name="multipool-quote-test", description="quoting 100% sure",
                       argv=("/bin/echo", *args), working_dir=odd, writable=(odd,),
                       environment=(("MP_VALUE", 'x y "q" 5% $Z \\'),))
    [path] = write_units(readable_dir, {"multipool-quote-test.service":
                                        systemd.render_service(spec)})
    path.chmod(0o644)
    assert verify(analyze, [path]) == []
    dump = systemd_dump(readable_dir, path.name)
    argv = _shell_words(_dumped(dump, "Command Line: "))
    assert argv == ["/bin/echo", *(arg.replace("$", "$$") for arg in args)]
    assert _dumped(dump, "Description: ") == "quoting 100% sure"
    assert _dumped(dump, "WorkingDirectory: ") == str(odd)
    assert _dumped(dump, "ReadWritePaths: ") == str(odd)
    assert _dumped(dump, "Environment: ") == 'MP_VALUE=x y "q" 5% $Z \\'


# -- installing units ---------------------------------------------------------------------

@pytest.fixture
def fake_systemctl(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """A systemctl stand-in: answers is-active/is-enabled from files in a state dir
    (<unit>.active, <unit>.enabled) and logs every other call, one line each."""
    state, log = tmp_path / "state", tmp_path / "systemctl.log"
    state.mkdir()
    script = tmp_path / "systemctl"
    script.write_text(f"""#!{sys.executable}
import sys
from pathlib import Path
state, log = Path({str(state)!r}), Path({str(log)!r})
command, *units = sys.argv[1:]
if command in ("is-active", "is-enabled"):
    suffix = ".active" if command == "is-active" else ".enabled"
    answer = state / (units[0] + suffix)
    if not answer.exists():
        if command == "is-enabled":
            sys.stderr.write("Failed to get unit file state: No such file or directory\\n")
        else:
            print("inactive")
        sys.exit(1 if command == "is-enabled" else 3)
    text = answer.read_text().strip()
    print(text)
    sys.exit(0 if text in ("active", "enabled") else 3)
with log.open("a") as handle:
    handle.write(" ".join(sys.argv[1:]) + "\\n")
""")
    script.chmod(0o755)
    return [str(script)], state, log


def _owner() -> str | None:
    return "root" if os.geteuid() == 0 else None


def test_install_units_is_idempotent(units: dict[str, str], tmp_path: Path, fake_systemctl):
    systemctl, _state, log = fake_systemctl
    unit_dir = tmp_path / "system"
    unit_dir.mkdir()
    owner = _owner()
    plan = systemd.install_units(units, unit_dir, owner=owner, group=owner, reload=True,
                                 systemctl=systemctl)
    assert [c.operation for c in plan] == ["files.file"] * len(units) + \
        ["systemd.daemon_reload"]
    assert {c.target for c in plan[:-1]} == {str(unit_dir / name) for name in units}
    for change in plan:
        change.apply()
    assert log.read_text() == "daemon-reload\n"
    for name, text in units.items():
        assert (unit_dir / name).read_text() == text
        assert (unit_dir / name).stat().st_mode & 0o777 == 0o644
    assert systemd.install_units(units, unit_dir, owner=owner, group=owner, reload=True,
                                 systemctl=systemctl) == []

    edited = {**units, "multipool-ltc-pool.service": units["multipool-ltc-pool.service"]
              .replace("TimeoutStopSec=30s", "TimeoutStopSec=45s")}
    again = systemd.install_units(edited, unit_dir, owner=owner, group=owner, reload=True,
                                  systemctl=systemctl)
    assert [(c.operation, Path(c.target).name) for c in again] == [
        ("files.file", "multipool-ltc-pool.service"), ("systemd.daemon_reload", "system")]


def test_install_units_without_reload(units: dict[str, str], tmp_path: Path):
    plan = systemd.install_units(units, tmp_path, owner=_owner(), group=_owner(),
                                 reload=False)
    assert [c.operation for c in plan] == ["files.file"] * len(units)


def test_install_units_refuses_a_path_as_name(tmp_path: Path):
    with pytest.raises(ValueError):
        systemd.install_units({"../evil.service": "x"}, tmp_path, reload=False)


def test_remove_units(units: dict[str, str], tmp_path: Path, fake_systemctl):
    systemctl, state, log = fake_systemctl
    (tmp_path / "system").mkdir()
    for change in systemd.install_units(units, tmp_path / "system", owner=_owner(),
                                        group=_owner(), reload=False):
        change.apply()
    (state / "multipool-ltc-pool.service.active").write_text("active")
    (state / "multipool-ltc-pool.service.enabled").write_text("enabled")
    plan = systemd.remove_units(["multipool-ltc-pool", "multipool-absent"],
                                tmp_path / "system", live=True, systemctl=systemctl)
    assert [c.operation for c in plan] == ["systemd.stop", "systemd.disable",
                                           "systemd.remove_unit", "systemd.daemon_reload"]
    for change in plan:
        change.apply()
    assert log.read_text().splitlines() == ["stop multipool-ltc-pool.service",
                                            "disable multipool-ltc-pool.service",
                                            "daemon-reload"]
    assert not (tmp_path / "system" / "multipool-ltc-pool.service").exists()
    assert systemd.remove_units(["multipool-ltc-pool"], tmp_path / "system", live=True,
                                systemctl=systemctl) == []


# -- service state ------------------------------------------------------------------------

def test_state_of_a_unit_not_installed_yet(fake_systemctl):
    systemctl, _state, log = fake_systemctl
    plan = systemd.service_state_changes("multipool-ltc-pool", running=True, enabled=True,
                                         live=True, systemctl=systemctl)
    assert [c.operation for c in plan] == ["systemd.enable", "systemd.start"]
    for change in plan:
        change.apply()
    assert log.read_text().splitlines() == ["enable multipool-ltc-pool.service",
                                            "start multipool-ltc-pool.service"]


def test_state_already_right_changes_nothing(fake_systemctl):
    systemctl, state, _log = fake_systemctl
    (state / "u.service.active").write_text("active")
    (state / "u.service.enabled").write_text("enabled")
    assert systemd.service_state_changes("u", running=True, enabled=True, live=True,
                                         systemctl=systemctl) == []


def test_failed_unit_is_reset_then_started(fake_systemctl):
    systemctl, state, log = fake_systemctl
    (state / "u.service.active").write_text("failed")
    (state / "u.service.enabled").write_text("enabled")
    [change] = systemd.service_state_changes("u", running=True, enabled=True, live=True,
                                             systemctl=systemctl)
    assert change.summary == "start (is failed)"
    change.apply()
    assert log.read_text().splitlines() == ["reset-failed u.service", "start u.service"]


def test_stop_and_disable(fake_systemctl):
    systemctl, state, _log = fake_systemctl
    (state / "u.service.active").write_text("active")
    (state / "u.service.enabled").write_text("enabled")
    plan = systemd.service_state_changes("u", running=False, enabled=False, live=True,
                                         systemctl=systemctl)
    assert [c.operation for c in plan] == ["systemd.stop", "systemd.disable"]


def test_masked_unit_is_refused(fake_systemctl):
    systemctl, state, _log = fake_systemctl
    (state / "u.service.enabled").write_text("masked")
    with pytest.raises(PoolError, match="masked"):
        systemd.service_state_changes("u", running=True, enabled=True, live=True,
                                      systemctl=systemctl)


def test_start_refused_without_systemd(fake_systemctl):
    systemctl, _state, _log = fake_systemctl
    with pytest.raises(PoolError, match="not running"):
        systemd.service_state_changes("u", running=True, enabled=True, live=False,
                                      systemctl=systemctl)
    # Enabling works offline (systemctl edits links), and nothing runs to be stopped.
    plan = systemd.service_state_changes("u", running=False, enabled=True, live=False,
                                         systemctl=systemctl)
    assert [c.operation for c in plan] == ["systemd.enable"]


def test_start_stop_restart_call_systemctl(fake_systemctl):
    systemctl, _state, log = fake_systemctl
    systemd.start(["multipool-ltc-daemon", "multipool-ltc-pool"], systemctl=systemctl)
    systemd.stop(["multipool-ltc-pool.service"], systemctl=systemctl)
    systemd.restart(["multipool-backup.timer"], systemctl=systemctl)
    systemd.start([], systemctl=systemctl)  # nothing to do: no call
    assert log.read_text().splitlines() == [
        "start multipool-ltc-daemon.service multipool-ltc-pool.service",
        "stop multipool-ltc-pool.service", "restart multipool-backup.timer"]
    with pytest.raises(ValueError):
        systemd.start(["--now"], systemctl=systemctl)


def test_systemd_running_matches_sd_booted():
    assert systemd.systemd_running() is Path("/run/systemd/system").is_dir()


@pytest.mark.parametrize(("database", "confined"), [
    ("sqlite", True),
    ("postgresql://admin:pw@127.0.0.1/postgres", True),
    ("mysql://admin:pw@localhost/mysql", True),
    ("postgresql://admin:pw@db.example.org/postgres", False),
    ("mariadb://admin:pw@10.0.0.5:3306/mysql", False),
])
def test_web_unit_reaches_a_database_server_on_another_host(tmp_path: Path, database: str,
                                                             confined: bool):
    """The web reads the pools' databases: confined to loopback when they are on this
    host, but a PostgreSQL or MariaDB server elsewhere must be reachable."""
    root = tmp_path / "opt"
    (root / "web").mkdir(parents=True)
    data = {"server": {"root": str(root), "public_host": "pool.example"},
            "database": {"url": database}}
    spec = web_service(Layout(root, "system"), parse_server_config(data, "multipool.toml"))
    lines = systemd.render_service(spec).splitlines()
    assert ("IPAddressDeny=any" in lines) is confined
    assert ("IPAddressAllow=localhost" in lines) is confined
