"""Writing TOML: tables of plain values, as multipool writes coin files (the standard
library reads TOML but does not write it)."""

from __future__ import annotations

import json
from typing import Any


def toml_value(value: Any) -> str:
    """Given a plain value, return it as TOML.

    >>> toml_value([1, "a", True, {"port": 3}])
    '[1, "a", true, { port = 3 }]'
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_document(data: dict[str, dict[str, Any]], header: str = "") -> str:
    """Given sections of plain values, return a TOML document; None values are left out."""
    lines = [header.rstrip("\n")] if header else []
    for section, table in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()
                  if value is not None]
        lines.append("")
    return "\n".join(lines)
