"""Render the agent's environment for sh (the env file), csh and fish."""

from __future__ import annotations

import shlex
from pathlib import Path

#: shell -> how it sets and exports a variable, from NAME ({0}) and VALUE ({1})
_SETTERS = {"sh": "{0}={1}; export {0};", "csh": "setenv {0} {1};", "fish": "set -x {0} {1};"}
SHELLS = tuple(_SETTERS)


def render(shell: str, socket: Path, agent_pid: int | None) -> str:
    """Return the lines ``ssh-agent -s`` (or ``-c``, or fish) would print for this agent."""
    if shell not in _SETTERS:
        raise ValueError(f"unknown shell {shell!r}")
    setter = _SETTERS[shell]
    lines = [setter.format("SSH_AUTH_SOCK", shlex.quote(str(socket)))]
    if agent_pid:
        lines += [setter.format("SSH_AGENT_PID", agent_pid), f"echo Agent pid {agent_pid};"]
    return "\n".join(lines) + "\n"
