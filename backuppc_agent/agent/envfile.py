"""Render the agent's environment for sh (the env file), csh and fish."""

from __future__ import annotations

from pathlib import Path

SHELLS = ("sh", "csh", "fish")


def _quote_sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'" if _needs_quoting(text) else text


def _needs_quoting(text: str) -> bool:
    return not text or any(not (c.isalnum() or c in "/._-+:@%,=") for c in text)


def render(shell: str, socket: Path, agent_pid: int | None) -> str:
    """Return the lines ``ssh-agent -s`` (or ``-c``, or fish) would print for this agent."""
    sock = _quote_sh(str(socket))
    pid = str(agent_pid) if agent_pid else ""
    if shell == "sh":
        lines = [f"SSH_AUTH_SOCK={sock}; export SSH_AUTH_SOCK;"]
        if pid:
            lines += [f"SSH_AGENT_PID={pid}; export SSH_AGENT_PID;", f"echo Agent pid {pid};"]
    elif shell == "csh":
        lines = [f"setenv SSH_AUTH_SOCK {sock};"]
        if pid:
            lines += [f"setenv SSH_AGENT_PID {pid};", f"echo Agent pid {pid};"]
    elif shell == "fish":
        lines = [f"set -x SSH_AUTH_SOCK {sock};"]
        if pid:
            lines += [f"set -x SSH_AGENT_PID {pid};", f"echo Agent pid {pid};"]
    else:
        raise ValueError(f"unknown shell {shell!r}")
    return "\n".join(lines) + "\n"
