"""Ask whatever listens on the agent socket for its identities, within a deadline.

This probe owns its socket (not SSH_AUTH_SOCK), bounds every step by one
deadline (a wedged listener must not hang a hook) and reports what it saw,
connection errors included, instead of "no keys".
"""

from __future__ import annotations

import dataclasses
import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import unixsock
from backuppc_agent.agent import protocol


class ProbeStatus(enum.Enum):
    """What the socket path gave us (each ``unixsock.Failure`` has the same value)."""

    ANSWERED = "answered"  # an ssh-agent of our uid listed its identities
    MISSING = "missing"  # nothing at the path
    REFUSED = "refused"  # a socket nobody listens on: stale
    TIMEOUT = "timeout"  # something accepted but did not answer in time
    BAD_REPLY = "bad-reply"  # something answered, but not like an ssh-agent
    FOREIGN = "foreign"  # the listener runs as another user
    ERROR = "error"  # any other failure (permissions, not a socket, ...)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe: status, identities if answered, the listener's pid/uid if known."""

    status: ProbeStatus
    identities: tuple[protocol.Identity, ...] = ()
    peer_pid: int | None = None
    peer_uid: int | None = None
    detail: str = ""
    seconds: float = 0.0

    @property
    def answered(self) -> bool:
        """True when a live ssh-agent of our uid answered."""
        return self.status is ProbeStatus.ANSWERED

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """SHA256 fingerprints of the identities, in the agent's order."""
        return tuple(protocol.fingerprint(identity.blob) for identity in self.identities)


#: The probe's signature: the supervisor, the keeper and the starter take a fake in tests.
Probe = Callable[[Path, float], ProbeResult]


def probe(path: Path, timeout: float, expected_uid: int | None = None) -> ProbeResult:
    """Connect to ``path`` and request identities; never blocks past ``timeout``."""
    started = time.monotonic()
    expected = os.getuid() if expected_uid is None else expected_uid
    result = _probe(path, started + timeout, expected)
    return dataclasses.replace(result, seconds=time.monotonic() - started)


def _probe(path: Path, deadline: float, expected_uid: int) -> ProbeResult:
    try:
        with connect(path, deadline, expected_uid) as conn:
            message = protocol.request_identities()
            identities = conn.exchange(message, protocol.reply_length, protocol.parse_identities)
            return ProbeResult(ProbeStatus.ANSWERED, identities, conn.peer_pid, conn.peer_uid)
    except unixsock.TransportError as err:
        status = ProbeStatus(err.failure.value)
        return ProbeResult(status, (), err.peer_pid, err.peer_uid, err.detail)


def connect(path: Path, deadline: float, expected_uid: int | None = None) -> unixsock.Connection:
    """Connect to the agent socket at ``path`` (see ``unixsock.connect``); raise TransportError.

    The connection carries any number of requests (framed by ``protocol.frame``)
    until ``deadline``.
    """
    return unixsock.connect(path, deadline, expected_uid, what="agent socket", peer="listener")
