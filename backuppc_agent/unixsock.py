"""Unix stream sockets to untrusted local listeners, every step bounded by one deadline.

The agent probe, the signing probe and the mux client talk to sockets that anyone of
our uid (or a stale file, or a wedged process) may hold. Here they connect, check the
listener's uid (SO_PEERCRED), bound each read and write, and every failure becomes a
``TransportError`` of one ``Failure`` kind: each protocol adds only its own outcomes.
Both protocols frame messages as a uint32 big-endian length, then the body. BackupPC's
server socket, served by BackupPC's user, is connected to here too, without the uid check.
"""

from __future__ import annotations

import contextlib
import enum
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from backuppc_agent.errors import ProtocolError

_PEERCRED = struct.Struct("3i")
_HEADER_BYTES = 4
T = TypeVar("T")


class Failure(enum.Enum):
    """How talking to a socket path failed (values: words in JSON and metric labels)."""

    MISSING = "missing"  # nothing at the path
    STALE = "stale"  # a socket nobody listens on (connect refused): its listener died
    TIMEOUT = "timeout"  # something accepted but did not answer in time
    BAD_REPLY = "bad-reply"  # something answered, but not in the expected protocol
    FOREIGN = "foreign"  # the listener runs as another user
    ERROR = "error"  # any other failure (permissions, not a socket, ...)


class TransportError(Exception):
    """Talking to a socket failed; ``peer_pid``/``peer_uid`` are set once known."""

    def __init__(
        self,
        failure: Failure,
        detail: str,
        peer_pid: int | None = None,
        peer_uid: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail
        self.peer_pid = peer_pid
        self.peer_uid = peer_uid


def _connect_failure(path: Path, err: OSError, what: str = "socket") -> TransportError:
    """The TransportError for a connect() to ``path`` that raised ``err``."""
    if isinstance(err, FileNotFoundError):
        return TransportError(Failure.MISSING, f"no {what} at {path}")
    if isinstance(err, ConnectionRefusedError):
        return TransportError(Failure.STALE, f"nothing listens on {path} (stale)")
    if isinstance(err, TimeoutError):
        return TransportError(Failure.TIMEOUT, f"connect to {path} timed out")
    return TransportError(Failure.ERROR, f"cannot connect to {path}: {err.strerror or err}")


def _left(deadline: float) -> float:
    """Seconds until ``deadline``; TimeoutError (an OSError) when none are left."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def connect(
    path: Path,
    deadline: float,
    expected_uid: int | None = None,
    what: str = "socket",
    peer: str = "listener",
) -> Connection:
    """Connect to ``path`` before ``deadline`` (monotonic) and check the listener's uid.

    ``expected_uid`` defaults to ours. ``what`` names the path and ``peer`` the
    listener in failure details. Raises TransportError.
    """
    conn = connect_any(path, deadline, what, peer)
    expected = os.getuid() if expected_uid is None else expected_uid
    if conn.peer_uid != expected:
        conn.close()
        pid, uid = conn.peer_pid, conn.peer_uid
        detail = f"{what} {path} is served by uid {uid} (pid {pid}), not uid {expected}"
        raise TransportError(Failure.FOREIGN, detail, pid, uid)
    return conn


def connect_any(
    path: Path, deadline: float, what: str = "socket", peer: str = "listener"
) -> Connection:
    """``connect`` without the uid check: for a server of another user. Raises TransportError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_left(deadline))
        sock.connect(os.fsencode(path))
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid, uid, _gid = _PEERCRED.unpack(raw)
    except OSError as err:
        sock.close()
        raise _connect_failure(path, err, what) from None
    return Connection(sock, deadline, peer, pid, uid)


@dataclass
class Connection:
    """One connection to a checked listener; ``deadline`` (monotonic) bounds every operation."""

    sock: socket.socket
    deadline: float
    peer: str
    peer_pid: int
    peer_uid: int

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _fail(self, failure: Failure, detail: str) -> TransportError:
        """A TransportError that names this connection's peer."""
        return TransportError(failure, detail, self.peer_pid, self.peer_uid)

    def exchange(
        self, message: bytes, length_of: Callable[[bytes], int], parse: Callable[[bytes], T]
    ) -> T:
        """Send ``message``, then read and parse one framed reply. Raises TransportError."""
        self.send(message)
        return self.receive(length_of, parse)

    def receive(self, length_of: Callable[[bytes], int], parse: Callable[[bytes], T]) -> T:
        """Read one frame (header, then ``length_of(header)`` bytes) and parse its body.

        ``length_of`` and ``parse`` raise ProtocolError, which becomes a BAD_REPLY failure.
        """
        try:
            body = self._recv_exact(length_of(self._recv_exact(_HEADER_BYTES)))
            return parse(body)
        except ProtocolError as err:
            raise self._fail(Failure.BAD_REPLY, str(err)) from None

    def send(self, data: bytes) -> None:
        """Send all of ``data``. Raises TransportError."""
        with self._bounded():
            self.sock.sendall(data)

    def send_fd(self, fd: int) -> None:
        """Pass ``fd`` to the peer: one byte with SCM_RIGHTS, as ssh's mm_send_fd does."""
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
        with self._bounded():
            self.sock.sendmsg([b"\0"], rights)

    def _recv_exact(self, size: int) -> bytes:
        """Read exactly ``size`` bytes. Raises TransportError (also when the peer closes early)."""
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            with self._bounded():
                count = self.sock.recv_into(view[got:])
            if count == 0:
                detail = f"{self.peer} closed the connection after {got} of {size} bytes"
                raise self._fail(Failure.BAD_REPLY, detail)
            got += count
        return bytes(buffer)

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[None]:
        """Bound one socket call by the deadline; turn its OSError into a TransportError."""
        try:
            self.sock.settimeout(_left(self.deadline))
            yield
        except TimeoutError:
            detail = f"{self.peer} (pid {self.peer_pid}) did not answer in time"
            raise self._fail(Failure.TIMEOUT, detail) from None
        except OSError as err:
            detail = f"{self.peer} hung up: {err.strerror or err}"
            raise self._fail(Failure.BAD_REPLY, detail) from None
