"""Command-line entry points: thin Typer commands, one module per command group."""
