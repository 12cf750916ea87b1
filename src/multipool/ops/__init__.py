"""The server manager: layout, users, daemon installs and configs, services, databases.

Every step is an operation that reads the current state, compares it with the wanted one
and returns only the :class:`~multipool.ops.changes.Change` objects needed; a command
shows the changes, applies them (or not, with ``--dry-run``), and a second run finds none.
"""
