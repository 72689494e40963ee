"""Ask whatever listens on the agent socket for its identities, within a deadline.

paramiko.Agent() has no timeout and swallows errors (FACTS.md); this probe
owns its socket, bounds every read by one deadline and reports what it saw.
"""

from __future__ import annotations

import enum
import os
import time
from pathlib import Path

from backuppc_agent import unixsock
from backuppc_agent.agent import protocol
from backuppc_agent.errors import ProtocolError
from backuppc_agent.records import Record


class ProbeStatus(enum.Enum):
    """What the socket path gave us."""

    ANSWERED = "answered"  # an ssh-agent of our uid listed its identities
    MISSING = "missing"  # nothing at the path
    REFUSED = "refused"  # a socket nobody listens on: stale
    TIMEOUT = "timeout"  # something accepted but did not answer in time
    BAD_REPLY = "bad-reply"  # something answered, but not like an ssh-agent
    FOREIGN = "foreign"  # the listener runs as another user
    ERROR = "error"  # any other failure (permissions, not a socket, ...)


class ProbeResult(Record):
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


def probe(path: Path, timeout: float, expected_uid: int | None = None) -> ProbeResult:
    """Connect to ``path`` and request identities; never blocks past ``timeout``."""
    started = time.monotonic()
    expected = os.getuid() if expected_uid is None else expected_uid
    result = _probe(path, started + timeout, expected)
    return result._replace(seconds=time.monotonic() - started)


def _probe(path: Path, deadline: float, expected_uid: int) -> ProbeResult:
    try:
        sock = unixsock.connect(path, deadline)
    except OSError as err:
        return _connect_failure(path, err)
    try:
        pid, uid = unixsock.peer_credentials(sock)
        if uid != expected_uid:
            detail = f"listener runs as uid {uid} (pid {pid}), not uid {expected_uid}"
            return ProbeResult(ProbeStatus.FOREIGN, peer_pid=pid, peer_uid=uid, detail=detail)
        return _exchange(sock, deadline, pid, uid)
    finally:
        sock.close()


def _connect_failure(path: Path, err: OSError) -> ProbeResult:
    if isinstance(err, FileNotFoundError):
        return ProbeResult(ProbeStatus.MISSING, detail=f"no socket at {path}")
    if isinstance(err, ConnectionRefusedError):
        return ProbeResult(ProbeStatus.REFUSED, detail=f"nothing listens on {path} (stale)")
    if isinstance(err, TimeoutError):
        return ProbeResult(ProbeStatus.TIMEOUT, detail=f"connect to {path} timed out")
    return ProbeResult(ProbeStatus.ERROR, detail=f"cannot connect to {path}: {err.strerror}")


def _exchange(sock: unixsock.Socket, deadline: float, pid: int, uid: int) -> ProbeResult:
    try:
        unixsock.send_all(sock, protocol.request_identities(), deadline)
        header = unixsock.recv_exact(sock, 4, deadline)
        body = unixsock.recv_exact(sock, protocol.reply_length(header), deadline)
        identities = protocol.parse_identities(body)
    except TimeoutError:
        detail = f"listener (pid {pid}) accepted but did not answer in time"
        return ProbeResult(ProbeStatus.TIMEOUT, peer_pid=pid, peer_uid=uid, detail=detail)
    except (ProtocolError, EOFError) as err:
        detail = str(err).replace("peer", "agent")
        return ProbeResult(ProbeStatus.BAD_REPLY, peer_pid=pid, peer_uid=uid, detail=detail)
    except OSError as err:
        detail = f"agent connection failed: {err.strerror or err}"
        return ProbeResult(ProbeStatus.BAD_REPLY, peer_pid=pid, peer_uid=uid, detail=detail)
    return ProbeResult(ProbeStatus.ANSWERED, identities, pid, uid)
