"""Options and error handling shared by the server-managing commands."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from multipool.errors import PoolError
from multipool.ops.server import DEFAULT_ROOT
from multipool.ops.treelock import tree_lock

console = Console(stderr=True)

RootOption = Annotated[Path, typer.Option(
    "--root", envvar="MULTIPOOL_ROOT", help="the server's root directory")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="show what would change, change nothing")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for machines")]
DEFAULT = DEFAULT_ROOT


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn multipool's own errors into one red line and exit code 2 (bad input) or 1."""
    try:
        yield
    except ValueError as exc:  # ConfigError and friends: bad input, nothing changed
        if not isinstance(exc, PoolError):
            raise
        # escape: a message naming a [section] must show it, not read it as markup
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (PoolError, OSError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def changing(root: Path, command: str, *, dry_run: bool
             ) -> contextlib.AbstractContextManager[None]:
    """The tree's change lock (ops/treelock.py) for ``command``, held from before it reads
    the tree until its last change; the operator is told when it waits for another
    command. A dry run changes nothing and takes none."""
    if dry_run:
        return contextlib.nullcontext()
    return tree_lock(root, command, on_wait=lambda line: console.print(
        line, highlight=False, soft_wrap=True))
