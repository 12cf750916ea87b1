#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine: the Debian packages multipool and its
# tests need, then a virtualenv in .venv with multipool installed in editable mode.
# Safe to run again: apt and pip skip what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# postgresql and mariadb-server: real throwaway database servers for the tests
# (multipool.testdb). Where systemd runs, apt also starts their default services;
# the tests never use those.
# git and sqlite3: what `multipool init` installs in system mode, present so its test
# needs no apt. systemd: systemd-analyze checks the generated units (nothing is started).
# nginx and apache2: the site `multipool init` generates for either ([web] server) is
# tested behind a real server of each (throwaway instances; the system's are not used).
# chromium: the pages are tested in a real headless browser (tests/browser), driven by
# Playwright with this system browser (Playwright's own browser download is not used).
APT_PACKAGES=(litecoind python3-venv python3-pip ca-certificates openssl procps
              postgresql mariadb-server git sqlite3 systemd nginx apache2 chromium)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"
else
    echo "setup: Debian packages present"
fi

# Debian's own Python by default: the coins' system users run the pool engines from this
# virtualenv (multipool run as root), and a Python kept under /root (pyenv) is out of
# their reach.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.multipool-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing multipool and its development tools into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
else
    echo "setup: .venv up to date"
fi
