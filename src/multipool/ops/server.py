"""`multipool init`: the server tree, its config file, the shared users and packages."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from multipool.config import ServerConfig, load_server_config, parse_server_config
from multipool.errors import ConfigError
from multipool.ops import changes, systemd
from multipool.ops.backup import backup_unit_changes
from multipool.ops.changes import Change
from multipool.ops.layout import Layout
from multipool.ops.reach import check_reachable
from multipool.ops.web import APACHE_DIR, NGINX_DIR, SERVER_PACKAGES, web_changes

DEFAULT_ROOT = Path("/opt/multipool")
# What a server needs before any coin: git for coins built from source, sqlite3 for the
# operator to look into a pool's database; and the web server of [web] server
# (web.SERVER_PACKAGES).
SYSTEM_PACKAGES = ("git", "ca-certificates", "sqlite3")


def server_config_text(root: Path, mode: str, public_host: str = "localhost") -> str:
    return (
        "# multipool server config. Coins live in coin/<prefix>/coin.toml.\n"
        "[server]\n"
        f'root = "{root}"\n'
        f'mode = "{mode}"              # system | local\n'
        f'public_host = "{public_host}"\n'
        "\n"
        "[database]\n"
        'url = "sqlite"               # or a PostgreSQL/MariaDB admin URL\n'
        "\n"
        "[web]\n"
        'listen = "127.0.0.1:8080"\n'
        'routing = "path"             # path | subdomain\n'
        'server = "nginx"             # nginx | apache: the site `init` writes\n'
        'metrics_listen = "127.0.0.1:9108"  # Prometheus /metrics, never proxied; "" for none\n'
    )


def check_mode(mode: str) -> None:
    if mode == "system" and os.geteuid() != 0:
        raise ConfigError("system mode creates users and installs packages: run as root, "
                          "or use --mode local", key="--mode")


def existing_server(layout: Layout) -> ServerConfig | None:
    """The server config already at the root, refused if it disagrees with the layout."""
    if not layout.config_file.exists():
        return None
    config = load_server_config(layout.config_file)
    if Path(config.root) != layout.root:
        raise ConfigError(f"says root {config.root!r}, but this is {str(layout.root)!r}",
                          file=config.path, key="server.root")
    if config.mode != layout.mode:
        raise ConfigError(f"says mode {config.mode!r}; `init --mode {layout.mode}` would "
                          f"change it: edit the file or use --mode {config.mode}",
                          file=config.path, key="server.mode")
    return config


def init_changes(layout: Layout, *, install_packages: bool = True,
                 unit_dir: Path = systemd.UNIT_DIR, nginx_dir: Path = NGINX_DIR,
                 apache_dir: Path = APACHE_DIR) -> list[Change]:
    """Given the wanted layout, return what `init` must change (nothing the second time).
    System mode: the nightly backup's units, the web unit (in ``unit_dir``) and the site
    of ``[web] server`` (in ``nginx_dir`` or ``apache_dir``) too."""
    check_mode(layout.mode)
    server = existing_server(layout)
    config_text = None
    if server is None:
        config_text = server_config_text(layout.root, layout.mode)
        server = parse_server_config(tomllib.loads(config_text), str(layout.config_file))
    if layout.system:  # its services run this interpreter as the web user
        check_reachable(layout.web_user, "the web process")
    plan: list[Change] = []
    # The web server's package, when this plan installs it: its site waits for it.
    web_package, installs_web_server = SERVER_PACKAGES[server.web_server], False
    if layout.system:
        if install_packages:
            packages = changes.apt_packages((*SYSTEM_PACKAGES, web_package))
            installs_web_server = any(web_package in change.target.split()
                                      for change in packages)
            plan += packages
        for user in (layout.build_user, layout.web_user):
            assert user is not None
            plan += changes.system_user(user, home=layout.root)
    for entry in layout.server_entries():
        plan += changes.directory(entry.path, owner=entry.owner, group=entry.group,
                                  mode=entry.mode)
    if config_text is not None:
        # 0600: [database] url may hold a database admin password.
        plan += changes.file(layout.config_file, config_text, owner=layout.admin,
                             group=layout.admin, mode=0o600)
    plan += backup_unit_changes(layout, unit_dir)
    plan += web_changes(layout, server, unit_dir=unit_dir, nginx_dir=nginx_dir,
                        apache_dir=apache_dir, server_installed=not installs_web_server)
    return plan


def open_layout(root: Path) -> Layout:
    """The layout of an initialised server, from its multipool.toml."""
    config_file = root / "multipool.toml"
    if not config_file.exists():
        raise ConfigError(f"no multipool.toml in {root}: run `multipool init --root {root}` "
                          "first", file=str(config_file))
    config = load_server_config(config_file)
    return Layout(Path(config.root), config.mode)
