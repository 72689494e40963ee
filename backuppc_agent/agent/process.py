"""The ssh-agent process: started as our child, or adopted from an earlier supervisor."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from backuppc_agent import proc, waits
from backuppc_agent.agent.probe import Probe, probe
from backuppc_agent.errors import AgentError

logger = logging.getLogger(__name__)

START_WAIT_SECONDS = 5.0
START_POLL_SECONDS = 0.01


def make_agent_command(program: str, socket: Path, lifetime_seconds: int) -> tuple[str, ...]:
    """Return the argv of a foreground ssh-agent bound to ``socket``."""
    argv: tuple[str, ...] = (program, "-D", "-a", str(socket))
    if lifetime_seconds > 0:
        argv += ("-t", str(lifetime_seconds))
    return argv


class AgentHandle(Protocol):
    """A running ssh-agent we are responsible for."""

    pid: int
    adopted: bool

    def exit_status(self) -> int | None:
        """The exit status if it is known to have exited, else None."""

    def stop(self) -> None:
        """End the agent (TERM, grace, KILL)."""


#: Starts ``argv`` and returns once it answers on the socket, or raises AgentError.
AgentStarter = Callable[[tuple[str, ...], Path, float, Probe], AgentHandle]


class Agent:
    """An ssh-agent we answer for: our child (``popen``), or one an earlier supervisor left."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.adopted = popen is None
        self._popen = popen

    def exit_status(self) -> int | None:
        # An adopted agent is not our child: we cannot wait for it.
        return self._popen.poll() if self._popen is not None else None

    def stop(self) -> None:
        if self._popen is not None:
            proc.stop_child(self._popen)  # ssh-agent unlinks its socket on TERM
        elif proc.process_name(self.pid) == "ssh-agent":  # not our child: the pid may be reused
            proc.stop_pid(self.pid)


def start_agent(
    argv: tuple[str, ...],
    socket: Path,
    probe_timeout: float,
    probe_fn: Probe = probe,
    wait_seconds: float = START_WAIT_SECONDS,
) -> Agent:
    """Start ssh-agent and wait until it answers on ``socket``; raise AgentError if not."""
    try:
        popen = proc.spawn(argv)
    except proc.CommandError as err:
        raise AgentError(f"cannot start ssh-agent: {err}") from err
    child = Agent(popen.pid, popen)

    def answers() -> bool:
        status = child.exit_status()
        if status is not None:
            raise AgentError(f"ssh-agent exited at start with status {status}")
        result = probe_fn(socket, probe_timeout)
        return result.answered and result.peer_pid == child.pid

    if waits.until(answers, time.monotonic() + wait_seconds, START_POLL_SECONDS):
        logger.info("started ssh-agent pid %d on %s", child.pid, socket)
        return child
    child.stop()
    raise AgentError(f"ssh-agent did not answer on {socket} within {wait_seconds:g} s")
