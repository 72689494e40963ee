"""Turn one probe of the agent into a published state and a reason."""

from __future__ import annotations

from collections.abc import Sequence

from backuppc_agent.agent.probe import ProbeResult, ProbeStatus
from backuppc_agent.state import State


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
