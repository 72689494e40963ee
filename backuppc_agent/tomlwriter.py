"""Write config files as TOML (tomllib only reads it): install's default file, ``config show``.

Only what a config file holds: tables of booleans, numbers, strings, paths and lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def toml_document(tables: Mapping[str, Mapping[str, object]], key_prefix: str = "") -> str:
    """Tables as TOML, one blank line after each; ``key_prefix="# "`` comments the keys out."""
    lines = []
    for name, keys in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key_prefix}{key} = {toml_value(value)}" for key, value in keys.items())
        lines.append("")
    return "\n".join(lines)


def toml_value(value: object) -> str:
    """One value as TOML: bool, number, str or Path (a basic string), None as "", or a list."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return '""'
    if isinstance(value, str | Path):
        return '"' + "".join(_toml_char(char) for char in str(value)) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _toml_char(char: str) -> str:
    """A character as a TOML basic string holds it: quotes, backslashes, the unprintable escaped."""
    if char in '"\\':
        return "\\" + char
    if char.isprintable():
        return char
    return f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}"
