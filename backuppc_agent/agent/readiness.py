"""Readiness: one probe of the agent (and its signing probe) judged once, and the wait for it.

Ready: a live ssh-agent of our uid holds every required key (or, none required, any key);
they (or one of the first SAMPLE_KEYS) sign a challenge; no certificate among them is out
of its validity. The restore key never counts: backups cannot use it.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from backuppc_agent import names, waits
from backuppc_agent.agent import certs, keyfiles
from backuppc_agent.agent.certs import Key, parse_keys
from backuppc_agent.agent.probe import Probe, ProbeResult, probe
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.agent.signing import SignCheck, sign_keys
from backuppc_agent.config import AgentConfig
from backuppc_agent.state import State
from backuppc_agent.unixsock import Failure

#: Shortest probe timeout near a wait's end (a probe always gets a chance), and the poll.
MIN_PROBE_SECONDS = 0.05
POLL_SECONDS = 0.05
#: Keys signed when none are required: ssh offers the agent's keys in order, so
#: the first ones are those a login uses; with 10,000 keys the probe stays small.
SAMPLE_KEYS = 8
#: Comments come from whoever added the key: shown printable and short.
COMMENT_CHARS = 60
#: Unusable keys kept in a verdict (and so in the published state).
MAX_UNUSABLE = 100

Signer = Callable[[Path, Sequence[Identity], float], Mapping[str, SignCheck]]


class Cause(enum.Enum):
    """Why readiness is what it is."""

    READY = "ready"  # the keys that count are usable (any others that are not are named)
    AGENT_DOWN = "agent-down"  # no ssh-agent of our uid answers on the socket
    AGENT_SLOW = "agent-slow"  # something accepted but did not answer in time
    NO_KEYS = "no-keys"  # the agent lists nothing (or is locked)
    MISSING_KEY = "missing-key"  # a required key is not loaded
    UNUSABLE = "unusable"  # keys listed, but those that count do not sign or are not valid
    EXPIRED = "expired"  # keys vanished at their agent.lifetime_seconds deadline


@dataclass(frozen=True, slots=True)
class Readiness:
    """One probe judged: the state, its cause and reason, and the facts behind them."""

    state: State
    cause: Cause
    reason: str
    probe: ProbeResult
    fingerprints: tuple[str, ...] = ()
    #: (fingerprint, sign check label or certificate validity) of the counting keys not usable
    unusable: tuple[tuple[str, str], ...] = ()
    expiries: tuple[certs.Expiry, ...] = ()  # of the loaded keys, soonest first
    expires: float | None = None  # when authentication stops working (None: never)
    waited_seconds: float = 0.0  # how long the wait that ended with this verdict took

    @property
    def identities(self) -> int:
        """How many keys the agent lists."""
        return len(self.probe.identities)


def counting(keys: Sequence[Key], required_keys: Sequence[str]) -> list[Key]:
    """The keys readiness judges, in the agent's order: the required ones, or all.

    A certificate stands for its key (ssh-add loads both), so the plain key cannot hide
    an expired certificate.
    """
    certified = {key.cert.key_blob for key in keys if key.cert is not None}
    wanted = set(required_keys)
    return [
        key
        for key in keys
        if key.identity.blob not in certified and (not wanted or key.listed in wanted)
    ]


def restore_key_fingerprint(agent: AgentConfig) -> str | None:
    """The restore key's fingerprint once it is set up, else None."""
    return keyfiles.key_fingerprint(agent.restore_key) if agent.restore_key_set_up() else None


def not_counted(agent: AgentConfig) -> frozenset[str]:
    """The fingerprints that never count for backups: the restore key's, once it is set up."""
    fingerprint = restore_key_fingerprint(agent)
    return frozenset((fingerprint,)) if fingerprint else frozenset()


def restore_key_loaded(agent: AgentConfig, fingerprints: Collection[str]) -> bool:
    """True if the restore key is set up and among ``fingerprints``: restores can run."""
    return not not_counted(agent).isdisjoint(fingerprints)


def to_sign(
    keys: Sequence[Key], required_keys: Sequence[str], ignored: Collection[str] = ()
) -> tuple[Identity, ...]:
    """The keys that count, only the first SAMPLE_KEYS of them when none are required."""
    found = counting([key for key in keys if key.listed not in ignored], required_keys)
    return tuple(key.identity for key in _sampled(found, bool(required_keys)))


def _sampled(found: Sequence[Key], required: bool) -> Sequence[Key]:
    """Of the keys that count, those signed: all when keys are required, else the first few."""
    return found if required else found[:SAMPLE_KEYS]


def missing(keys: Sequence[Key], required_keys: Sequence[str]) -> list[str]:
    """The required fingerprints the agent does not hold, in config order."""
    loaded = {key.listed for key in keys}
    return [fp for fp in required_keys if fp not in loaded]


def judge(
    result: ProbeResult,
    keys: Sequence[Key],
    required_keys: Sequence[str],
    checks: Mapping[str, SignCheck] | None,
    now: float,
    lifetimes: Sequence[certs.Expiry] = (),
    vanished: str | None = None,
    ignored: Collection[str] = (),
) -> Readiness:
    """Judge one probe whose identities are ``keys``.

    ``checks``: by fingerprint (None: not signed); ``lifetimes``: expiries under
    agent.lifetime_seconds; ``vanished``: the reason while waiting; ``ignored``: never count.
    """
    backup = [key for key in keys if key.listed not in ignored]
    found = counting(backup, required_keys)
    usable, problems = _judge(found, bool(required_keys), checks, now)
    state, cause, reason = _verdict(result, backup, required_keys, usable, problems)
    if keys and not backup and result.answered:
        reason = "only the restore key is loaded: backups need their own key; run ssh-add"
    if vanished and state is State.WAITING:
        cause, reason = Cause.EXPIRED, vanished
    loaded = {key.fingerprint for key in keys}
    times = [
        (key.fingerprint, key.cert.expires, certs.CERTIFICATE)
        for key in keys
        if key.cert is not None and key.cert.expires is not None
    ]
    times += [item for item in lifetimes if item[0] in loaded]
    unusable = sorted((key.fingerprint, why) for key, why, _text in problems if why)
    return Readiness(
        state,
        cause,
        reason,
        result,
        tuple(key.fingerprint for key in keys),
        tuple(unusable[:MAX_UNUSABLE]),
        certs.published(times),
        certs.first_expiry(times, [key.fingerprint for key in found], bool(required_keys)),
    )


def _verdict(
    result: ProbeResult,
    keys: Sequence[Key],
    required_keys: Sequence[str],
    usable: int,
    problems: list[tuple[Key, str, str]],
) -> tuple[State, Cause, str]:
    if not result.answered:
        slow = result.status is Failure.TIMEOUT
        cause = Cause.AGENT_SLOW if slow else Cause.AGENT_DOWN
        return State.DOWN, cause, result.detail or result.status.value
    if not keys:
        # A locked agent answers with an empty list too: they cannot be told apart.
        return State.WAITING, Cause.NO_KEYS, "no keys loaded (or the agent is locked); run ssh-add"
    absent = missing(keys, required_keys)
    if absent:
        return State.WAITING, Cause.MISSING_KEY, "required key(s) not loaded: " + ", ".join(absent)
    loaded = f"{len(keys)} key{'s' if len(keys) != 1 else ''} loaded"
    if problems and (required_keys or not usable):
        return State.WAITING, Cause.UNUSABLE, _problem_text(problems)
    if problems:
        return State.READY, Cause.READY, f"{loaded}; " + _problem_text(problems)
    return State.READY, Cause.READY, loaded


def _judge(
    keys: Sequence[Key], required: bool, checks: Mapping[str, SignCheck] | None, now: float
) -> tuple[int, list[tuple[Key, str, str]]]:
    """(usable count, (key, label, why) per unusable key): certificates, then sign checks."""
    usable, problems, sampled = 0, [], len(_sampled(keys, required))
    for index, key in enumerate(keys):
        signed = index < sampled
        problem = _problem(key, checks if signed else None, now)
        if problem is not None:
            problems.append((key, *problem))
        elif signed or checks is None:
            usable += 1
    return usable, problems


def _problem(
    key: Key, checks: Mapping[str, SignCheck] | None, now: float
) -> tuple[str, str] | None:
    """(label, why) if ``key`` cannot be used: its certificate, else its sign check (if signed)."""
    if key.unreadable:
        return SignCheck(Failure.BAD_REPLY).label, f"unreadable certificate ({key.unreadable})"
    if key.cert is not None and (why := key.cert.validity_problem(now)) is not None:
        return key.cert.validity(now).value, why
    if checks is None:
        return None
    check = checks.get(key.fingerprint)
    if check is None:
        return "", "not checked yet"
    return None if check.ok else (check.label, check.reason)


def _problem_text(problems: list[tuple[Key, str, str]]) -> str:
    """``key SHA256:... (comment): why``, the comment made printable and short."""
    key, _label, why = problems[0]
    shown = names.visible(key.identity.comment, COMMENT_CHARS)
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"key {key.fingerprint}{f' ({shown})' if shown else ''}: {why}{more}"


def assess(
    agent: AgentConfig,
    result: ProbeResult,
    fingerprints: Sequence[str],
    sign: Callable[[tuple[Identity, ...]], Mapping[str, SignCheck]],
    now: float,
    lifetimes: Sequence[certs.Expiry] = (),
    vanished: str | None = None,
    always_sign: bool = False,
) -> Readiness:
    """Parse the probe's keys (``fingerprints``: theirs), ``sign`` those that count, judge.

    Signs once the agent answered: with every required key loaded, or ``always_sign``
    (the supervisor, whose sign cache must see each change of keys).
    """
    keys = parse_keys(result.identities, fingerprints)
    ignored = not_counted(agent)
    checks = None
    if result.answered and (always_sign or (keys and not missing(keys, agent.required_keys))):
        checks = sign(to_sign(keys, agent.required_keys, ignored))
    return judge(result, keys, agent.required_keys, checks, now, lifetimes, vanished, ignored)


def check_probe(
    agent: AgentConfig,
    result: ProbeResult,
    timeout: float,
    sign_agent: Signer | None = None,
    lifetimes: Sequence[certs.Expiry] = (),
) -> Readiness:
    """Judge ``result`` (a probe already taken), signing the keys that count within ``timeout``.

    Signing expects the uid the probe checked, so only the agent that answered is asked.
    """
    signer = sign_agent or partial(sign_keys, expected_uid=result.peer_uid)

    def sign(keys: tuple[Identity, ...]) -> Mapping[str, SignCheck]:
        return signer(agent.socket, keys, timeout)

    return assess(agent, result, result.fingerprints, sign, time.time(), lifetimes)


def wait_ready(
    agent: AgentConfig,
    seconds: float | None,
    poll_seconds: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = waits.pause,
    probe_agent: Probe = probe,
    sign_agent: Signer = sign_keys,
) -> Readiness:
    """Probe until ready or ``seconds`` (None: no limit) pass; return the last verdict."""
    started = clock()
    deadline = None if seconds is None else started + seconds

    def once() -> Readiness:
        timeout = agent.probe_timeout_seconds
        if deadline is not None:
            timeout = min(timeout, max(deadline - clock(), MIN_PROBE_SECONDS))
        ready = check_probe(agent, probe_agent(agent.socket, timeout), timeout, sign_agent)
        return dataclasses.replace(ready, waited_seconds=clock() - started)

    return waits.until(once, deadline, poll_seconds, done=_is_ready, clock=clock, sleep=sleep)


def _is_ready(ready: Readiness) -> bool:
    return ready.state is State.READY
