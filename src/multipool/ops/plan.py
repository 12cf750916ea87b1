"""Showing and applying a list of changes: the shared end of every managing command."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from multipool.ops.changes import Change


def changes_table(changes: Sequence[Change], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("operation", style="cyan")
    table.add_column("target")
    table.add_column("change")
    for number, change in enumerate(changes, 1):
        table.add_row(str(number), change.operation, change.target, change.summary)
    return table


def apply_changes(changes: Sequence[Change], *, console: Console, dry_run: bool,
                  as_json: bool, title: str) -> None:
    """Show the changes, then apply them in order unless ``dry_run``. A failure stops at
    the failing change: those before it stay applied, and the same command resumes."""
    if as_json:
        applied = 0
        if not dry_run:
            for change in changes:
                change.apply()
                applied += 1
        print(json.dumps({"dry_run": dry_run, "applied": applied, "changes": [
            {"operation": c.operation, "target": c.target, "change": c.summary}
            for c in changes]}, indent=2))
        return
    if not changes:
        console.print(f"{title}: [green]nothing to change[/]")
        return
    console.print(changes_table(changes, f"{title}: {len(changes)} change(s)"
                                + (" (dry run, nothing applied)" if dry_run else "")))
    if dry_run:
        return
    with console.status("applying ...") as status:
        for number, change in enumerate(changes, 1):
            status.update(f"[{number}/{len(changes)}] {change}")
            change.apply()
    console.print(f"[green]done:[/] {len(changes)} change(s) applied")
