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
