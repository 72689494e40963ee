"""Ask whatever listens on the agent socket (ours, not SSH_AUTH_SOCK) for its identities.

One deadline bounds every step (a wedged listener must not hang a hook), and what the probe
saw, connection errors included, is reported instead of "no keys".
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import unixsock
from backuppc_agent.agent import protocol
from backuppc_agent.unixsock import Failure


class Probed(enum.Enum):
    """The probe's own outcome; otherwise talking to the socket failed (``Failure``)."""

    ANSWERED = "answered"  # an ssh-agent of the expected uid listed its identities


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe: status, identities if answered, the listener's pid/uid if known."""

    status: Probed | Failure
    identities: tuple[protocol.Identity, ...] = ()
    peer_pid: int | None = None
    peer_uid: int | None = None
    detail: str = ""
    seconds: float = 0.0

    @property
    def answered(self) -> bool:
        """True when a live ssh-agent of the expected uid answered."""
        return self.status is Probed.ANSWERED

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """SHA256 fingerprints of the identities, in the agent's order."""
        return tuple(identity.fingerprint for identity in self.identities)


#: The probe's signature: the supervisor, the keeper and the starter take a fake in tests.
Probe = Callable[[Path, float], ProbeResult]


def probe(path: Path, timeout: float, expected_uid: int | None = None) -> ProbeResult:
    """Ask the agent of ``expected_uid`` (default ours) at ``path`` for its identities.

    Never blocks past ``timeout``; returns what it saw, failures included.
    """
    started = time.monotonic()
    result = _probe(path, started + timeout, expected_uid)
    return dataclasses.replace(result, seconds=time.monotonic() - started)


def _probe(path: Path, deadline: float, expected_uid: int | None) -> ProbeResult:
    try:
        with connect(path, deadline, expected_uid) as conn:
            message = protocol.REQUEST_IDENTITIES
            identities = conn.exchange(message, protocol.reply_length, protocol.parse_identities)
            return ProbeResult(Probed.ANSWERED, identities, conn.peer_pid, conn.peer_uid)
    except unixsock.TransportError as err:
        return ProbeResult(err.failure, (), err.peer_pid, err.peer_uid, err.detail)


def connect(path: Path, deadline: float, expected_uid: int | None = None) -> unixsock.Connection:
    """Connect to the agent socket for requests until ``deadline``; raise TransportError."""
    return unixsock.connect(path, deadline, expected_uid, what="agent socket", peer="listener")
