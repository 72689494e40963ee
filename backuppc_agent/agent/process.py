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


class ChildAgent:
    """An ssh-agent we started: our child, in its own session so it can outlive us."""

    adopted = False

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid

    def exit_status(self) -> int | None:
        return self._popen.poll()

    def stop(self) -> None:
        proc.stop_child(self._popen)  # ssh-agent unlinks its socket on TERM


class AdoptedAgent:
    """A live agent left by an earlier supervisor: not our child (so no exit status)."""

    adopted = True

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def exit_status(self) -> int | None:
        return None

    def stop(self) -> None:
        # Not our child: the pid may have been reused since, so check its name first.
        if proc.process_name(self.pid) == "ssh-agent":
            proc.stop_pid(self.pid)


def start_agent(
    argv: tuple[str, ...],
    socket: Path,
    probe_timeout: float,
    probe_fn: Probe = probe,
    wait_seconds: float = START_WAIT_SECONDS,
) -> ChildAgent:
    """Start ssh-agent and wait until it answers on ``socket``; raise AgentError if not."""
    try:
        popen = proc.spawn(argv)
    except proc.CommandError as err:
        raise AgentError(f"cannot start ssh-agent: {err}") from err
    child = ChildAgent(popen)

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
