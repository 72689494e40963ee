"""Readiness: one probe of the agent (and its signing probe) judged, and the wait for it.

Ready means: a live ssh-agent of our uid answered; every required key is
loaded (or, with none required, at least one key is); each required key (or,
with none required, at least one of the first keys) signed a challenge; and
no certificate among them is expired or not yet valid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import waits
from backuppc_agent.agent.certs import is_certificate, parse_certificate
from backuppc_agent.agent.probe import Probe, ProbeResult, ProbeStatus, probe
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.agent.signing import (
    SAMPLE_KEYS,
    SignCheck,
    counting_keys,
    keys_to_sign,
    listed_fingerprint,
    sign_keys,
)
from backuppc_agent.config import AgentConfig
from backuppc_agent.errors import ProtocolError
from backuppc_agent.state import State

#: Shortest probe timeout near the end of a wait: a probe always gets a chance to answer.
MIN_PROBE_SECONDS = 0.05

Signer = Callable[[Path, Sequence[Identity], float], Mapping[str, SignCheck]]


@dataclass(frozen=True, slots=True)
class Readiness:
    """The end of a wait for readiness."""

    state: State
    reason: str
    waited_seconds: float
    identities: int
    #: how the last probe ended: TIMEOUT means the agent was too slow, not gone
    probe: ProbeStatus = ProbeStatus.ANSWERED


#: How the reason for a required key that is not loaded starts.
MISSING_PREFIX = "required key(s) not loaded: "
#: Comments come from whoever added the key: shown printable and short.
COMMENT_CHARS = 60


def check_live(
    agent: AgentConfig,
    timeout: float | None = None,
    probe_agent: Probe = probe,
    sign_agent: Signer = sign_keys,
) -> tuple[ProbeResult, State, str]:
    """List the agent's keys, sign with those that count, judge: (probe, state, reason).

    Each of the two probes is bounded by ``timeout`` (default: probe_timeout_seconds).
    """
    seconds = agent.probe_timeout_seconds if timeout is None else timeout
    result = probe_agent(agent.socket, seconds)
    checks = None
    if result.answered and result.identities and not missing_keys(result, agent.required_keys):
        keys = keys_to_sign(result.identities, agent.required_keys)
        checks = sign_agent(agent.socket, keys, seconds)
    state, reason = evaluate(result, agent.required_keys, checks, time.time())
    return result, state, reason


def evaluate(
    result: ProbeResult,
    required_keys: Sequence[str],
    checks: Mapping[str, SignCheck] | None = None,
    now: float | None = None,
    fingerprints: Sequence[str] | None = None,
) -> tuple[State, str]:
    """Return (state, reason) for a probe, given the fingerprints that must be loaded.

    ``checks`` are the signing probe's results by fingerprint (None: no signing
    probe, a listed key counts); ``now`` (Unix time) enables certificate checks;
    ``fingerprints`` (the identities', in order) saves hashing them again.
    """
    if result.status is not ProbeStatus.ANSWERED:
        return State.DOWN, result.detail or result.status.value
    if not result.identities:
        # A locked agent answers with an empty list too: they cannot be told apart.
        return State.WAITING, "no keys loaded (or the agent is locked); run ssh-add"
    missing = missing_keys(result, required_keys, fingerprints)
    if missing:
        return State.WAITING, MISSING_PREFIX + ", ".join(missing)
    count = len(result.identities)
    loaded = f"{count} key{'s' if count != 1 else ''} loaded"
    keys = counting_keys(result.identities, required_keys, fingerprints)
    usable, problems = _judge(keys, bool(required_keys), checks, now)
    if problems and (required_keys or not usable):
        return State.WAITING, _problem_text(problems)
    if problems:
        return State.READY, f"{loaded}; " + _problem_text(problems)
    return State.READY, loaded


def missing_keys(
    result: ProbeResult, required_keys: Sequence[str], fingerprints: Sequence[str] | None = None
) -> list[str]:
    """Return the required fingerprints the agent does not hold, in config order.

    A certificate holds the fingerprint of its key, as ``ssh-add -l`` shows it.
    """
    if not required_keys:
        return []
    prints = result.fingerprints if fingerprints is None else fingerprints
    loaded = {
        listed_fingerprint(identity, known)
        for identity, known in zip(result.identities, prints, strict=True)
    }
    return [key for key in required_keys if key not in loaded]


def _judge(
    keys: Sequence[Identity],
    required: bool,
    checks: Mapping[str, SignCheck] | None,
    now: float | None,
) -> tuple[int, list[str]]:
    """(how many counting keys are usable, one "KEY: why" per counting key that is not).

    Every counting key is judged for its certificate; the required ones, or
    else the first SAMPLE_KEYS (those the signing probe signs), for signing.
    """
    usable, problems = 0, []
    for index, identity in enumerate(keys):
        signed = required or index < SAMPLE_KEYS
        why = _cert_problem(identity, now)
        if why is None and checks is not None and signed:
            check = checks.get(identity.fingerprint)
            why = "not checked yet" if check is None else (check.reason or None)
        if why is not None:
            problems.append(f"{label(identity)}: {why}")
        elif signed or checks is None:
            usable += 1
    return usable, problems


def _cert_problem(identity: Identity, now: float | None) -> str | None:
    """Why a certificate does not count at ``now`` (None for plain keys and valid certs)."""
    if now is None or not is_certificate(identity.key_type):
        return None
    try:
        cert = parse_certificate(identity.blob)
    except ProtocolError as err:
        return f"unreadable certificate ({err})"
    return None if cert is None else cert.validity_problem(now)


def label(identity: Identity) -> str:
    """``SHA256:... (comment)`` with the comment made printable and short."""
    comment = "".join(c if c.isprintable() else "?" for c in identity.comment[:COMMENT_CHARS])
    return f"{identity.fingerprint} ({comment})" if comment else identity.fingerprint


def _problem_text(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"key {problems[0]}{more}"


def wait_ready(
    agent: AgentConfig,
    seconds: float | None,
    poll_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = waits.pause,
    probe_agent: Probe = probe,
    sign_agent: Signer = sign_keys,
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
        result, state, reason = check_live(agent, timeout, probe_agent, sign_agent)
        return Readiness(state, reason, clock() - started, len(result.identities), result.status)

    return waits.until(once, deadline, poll_seconds, done=_is_ready, clock=clock, sleep=sleep)


def _is_ready(ready: Readiness) -> bool:
    return ready.state is State.READY
