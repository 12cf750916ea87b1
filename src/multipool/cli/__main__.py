"""`python -m multipool.cli` runs the `multipool` command."""

from multipool.cli.main import app

app()
