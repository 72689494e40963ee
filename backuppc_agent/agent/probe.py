"""Ask whatever listens on the agent socket for its identities, within a deadline.

paramiko.Agent() has no timeout and swallows errors (FACTS.md); this probe
owns its socket, bounds every read by one deadline and reports what it saw.
"""

from __future__ import annotations

import enum
import os
import socket
import struct
import time
from pathlib import Path
from typing import NamedTuple

from backuppc_agent.agent import protocol
from backuppc_agent.errors import ProtocolError

_PEERCRED = struct.Struct("3i")


class ProbeStatus(enum.Enum):
    """What the socket path gave us."""

    ANSWERED = "answered"  # an ssh-agent of our uid listed its identities
    MISSING = "missing"  # nothing at the path
    REFUSED = "refused"  # a socket nobody listens on: stale
    TIMEOUT = "timeout"  # something accepted but did not answer in time
    BAD_REPLY = "bad-reply"  # something answered, but not like an ssh-agent
    FOREIGN = "foreign"  # the listener runs as another user
    ERROR = "error"  # any other failure (permissions, not a socket, ...)


class ProbeResult(NamedTuple):
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
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        failure = _connect(sock, path, deadline)
        if failure is not None:
            return failure
        pid, uid = _peer_credentials(sock)
        if uid != expected_uid:
            detail = f"listener runs as uid {uid} (pid {pid}), not uid {expected_uid}"
            return ProbeResult(ProbeStatus.FOREIGN, peer_pid=pid, peer_uid=uid, detail=detail)
        return _exchange(sock, deadline, pid, uid)
    finally:
        sock.close()


def _connect(sock: socket.socket, path: Path, deadline: float) -> ProbeResult | None:
    try:
        sock.settimeout(_remaining(deadline))
        sock.connect(os.fsencode(path))
    except FileNotFoundError:
        return ProbeResult(ProbeStatus.MISSING, detail=f"no socket at {path}")
    except ConnectionRefusedError:
        return ProbeResult(ProbeStatus.REFUSED, detail=f"nothing listens on {path} (stale)")
    except TimeoutError:
        return ProbeResult(ProbeStatus.TIMEOUT, detail=f"connect to {path} timed out")
    except OSError as err:
        return ProbeResult(ProbeStatus.ERROR, detail=f"cannot connect to {path}: {err.strerror}")
    return None


def _peer_credentials(sock: socket.socket) -> tuple[int, int]:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, _gid = _PEERCRED.unpack(raw)
    return pid, uid


def _exchange(sock: socket.socket, deadline: float, pid: int, uid: int) -> ProbeResult:
    try:
        sock.sendall(protocol.request_identities())
        header = _recv_exact(sock, 4, deadline)
        body = _recv_exact(sock, protocol.reply_length(header), deadline)
        identities = protocol.parse_identities(body)
    except TimeoutError:
        detail = f"listener (pid {pid}) accepted but did not answer in time"
        return ProbeResult(ProbeStatus.TIMEOUT, peer_pid=pid, peer_uid=uid, detail=detail)
    except ProtocolError as err:
        return ProbeResult(ProbeStatus.BAD_REPLY, peer_pid=pid, peer_uid=uid, detail=str(err))
    except OSError as err:
        detail = f"agent connection failed: {err.strerror or err}"
        return ProbeResult(ProbeStatus.BAD_REPLY, peer_pid=pid, peer_uid=uid, detail=detail)
    return ProbeResult(ProbeStatus.ANSWERED, identities, pid, uid)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _recv_exact(sock: socket.socket, size: int, deadline: float) -> memoryview:
    """Read exactly ``size`` bytes before ``deadline``; raise TimeoutError or ProtocolError."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        sock.settimeout(_remaining(deadline))
        count = sock.recv_into(view[got:])
        if count == 0:
            raise ProtocolError(f"agent closed the connection after {got} of {size} bytes")
        got += count
    return view
