"""The config file ``install`` writes: every key, commented out at its default.

Rendered from ``config.SCHEMA`` itself, so a key added there shows up here
without a second list to keep in step.
"""

from __future__ import annotations

from typing import Any

from backuppc_agent import config as config_mod

HEADER = """\
# backuppc-agent configuration (TOML). Every key is optional: the commented
# values are the built-in defaults. `~` is the home of the account that runs
# the supervisor (backuppc). Check a change with: backuppc-agent config check
# A running supervisor rereads this file on SIGHUP (reload); moving the socket
# or the state dir needs a restart.
"""


def toml_value(value: Any) -> str:
    """A default value as TOML text."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def render_default() -> str:
    """The commented default configuration."""
    lines = [HEADER]
    for section, keys in config_mod.SCHEMA.items():
        lines.append(f"[{section}]")
        lines.extend(f"# {name} = {toml_value(spec.default)}" for name, spec in keys.items())
        lines.append("")
    return "\n".join(lines)
