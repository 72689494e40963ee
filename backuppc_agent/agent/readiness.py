"""Readiness: one probe of the agent turned into a state and a reason, and the wait for it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import waits
from backuppc_agent.agent.probe import ProbeResult, ProbeStatus, probe
from backuppc_agent.config import AgentConfig
from backuppc_agent.state import State

#: Shortest probe timeout near the end of a wait: a probe always gets a chance to answer.
MIN_PROBE_SECONDS = 0.05

Probe = Callable[[Path, float], ProbeResult]


@dataclass(frozen=True, slots=True)
class Readiness:
    """The end of a wait for readiness."""

    state: State
    reason: str
    waited_seconds: float
    identities: int
    #: how the last probe ended: TIMEOUT means the agent was too slow, not gone
    probe: ProbeStatus = ProbeStatus.ANSWERED


def evaluate(result: ProbeResult, required_keys: Sequence[str]) -> tuple[State, str]:
    """Return (state, reason) for a probe, given the fingerprints that must be loaded."""
    if result.status is not ProbeStatus.ANSWERED:
        return State.DOWN, result.detail or result.status.value
    if not result.identities:
        # A locked agent answers with an empty list too: they cannot be told apart.
        return State.WAITING, "no keys loaded (or the agent is locked); run ssh-add"
    missing = missing_keys(result, required_keys)
    if missing:
        return State.WAITING, "required key(s) not loaded: " + ", ".join(missing)
    count = len(result.identities)
    return State.READY, f"{count} key{'s' if count != 1 else ''} loaded"


def missing_keys(result: ProbeResult, required_keys: Sequence[str]) -> list[str]:
    """Return the required fingerprints the agent does not hold, in config order."""
    if not required_keys:
        return []
    loaded = set(result.fingerprints)
    return [key for key in required_keys if key not in loaded]


def wait_ready(
    agent: AgentConfig,
    seconds: float | None,
    poll_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = waits.pause,
    probe_agent: Probe = probe,
) -> Readiness:
    """Probe the agent every ``poll_seconds`` until it is ready or ``seconds`` (None: ever) pass.

    Returns the last Readiness, ready or not; no probe outlasts the deadline by much.
    """
    started = clock()
    deadline = None if seconds is None else started + seconds

    def once() -> Readiness:
        timeout = agent.probe_timeout_seconds
        if deadline is not None:
            timeout = min(timeout, max(deadline - clock(), MIN_PROBE_SECONDS))
        result = probe_agent(agent.socket, timeout)
        state, reason = evaluate(result, agent.required_keys)
        return Readiness(state, reason, clock() - started, len(result.identities), result.status)

    return waits.until(once, deadline, poll_seconds, done=_is_ready, clock=clock, sleep=sleep)


def _is_ready(ready: Readiness) -> bool:
    return ready.state is State.READY
