"""A client for OpenSSH's ControlMaster socket (PROTOCOL.mux), every step under a deadline.

We use ALIVE_CHECK (is the master up, and its pid): about 0.1 ms instead of
5 ms for an ``ssh -O check`` subprocess; NEW_SESSION, only as far as the
client's sshd confirming the channel (is the master's connection alive: one
round trip, ~2 ms on loopback); TERMINATE (``ssh -O exit``) and STOP_LISTENING
(``ssh -O stop``). The socket is untrusted: ``unixsock`` bounds every step and
refuses a listener of another uid (the ssh client itself does not check who
owns the master it talks to); ``mux_framing`` bounds and checks every frame.
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import unixsock
from backuppc_agent.ssh import mux_framing as framing
from backuppc_agent.unixsock import Failure, TransportError

#: What a session that only proves the connection runs on the client: a shell builtin.
PROBE_COMMAND = b"true"


class Master(enum.Enum):
    """What a master said; otherwise talking to its socket failed (``Failure``)."""

    ALIVE = "alive"  # the master answered (and opened a session, if asked to)
    UNRESPONSIVE = "unresponsive"  # the master runs, but its connection opened no session
    TERMINATED = "terminated"  # the master was asked to exit
    STOPPED = "stopped"  # the master stopped listening


@dataclass(frozen=True, slots=True)
class MuxResult:
    """One request to a control socket: its status, the master's pid if known, and why."""

    #: what the master said, or how talking to its socket failed (STALE: its master was killed)
    status: Master | Failure
    pid: int | None
    detail: str

    @property
    def alive(self) -> bool:
        """True when the master answered."""
        return self.status is Master.ALIVE

    def as_dict(self) -> dict[str, object]:
        """The result as JSON-ready values (``status`` by its value)."""
        return {
            "alive": self.alive,
            "pid": self.pid,
            "detail": self.detail,
            "status": self.status.value,
        }


def failed_result(err: TransportError, pid: int | None = None) -> MuxResult:
    """The result for a failed request (``pid``: the master's, if an earlier reply gave it)."""
    return MuxResult(err.failure, pid, err.detail)


def _connect(path: Path, timeout: float) -> unixsock.Connection:
    """Connect, check the peer's uid and exchange hellos; raise TransportError."""
    deadline = time.monotonic() + timeout
    conn = unixsock.connect(path, deadline, what="control socket", peer="master")
    try:
        hello = framing.encode(framing.MUX_MSG_HELLO, framing.MUX_VERSION)
        conn.exchange(hello, framing.frame_length, framing.parse_hello)
    except BaseException:
        conn.close()
        raise
    return conn


def check(path: Path, timeout: float, session_timeout: float | None = None) -> MuxResult:
    """Ask the master on ``path`` whether it is alive; never blocks past ``timeout``.

    With ``session_timeout``, also prove its connection: open a session that
    runs ``true``. An alive check proves only that the local master process
    runs. A master whose client vanished without closing the connection (power
    cut, network partition, a frozen sshd) answers it for ServerAliveInterval
    x 3 while every session on it hangs. The session must be confirmed by the
    client's sshd within ``session_timeout``; otherwise the status is
    UNRESPONSIVE, with the master's pid. Only the channel's opening is
    awaited, not ``true``.
    """
    request_id = os.getpid() & 0xFFFFFFFF
    pid = None
    try:
        with _connect(path, timeout) as conn:
            alive = framing.encode(framing.MUX_C_ALIVE_CHECK, request_id)
            pid = conn.exchange(
                alive, framing.frame_length, lambda body: framing.parse_alive(body, request_id)
            )
            if session_timeout is not None:
                conn.deadline = time.monotonic() + session_timeout
                _open_session(conn, (request_id + 1) & 0xFFFFFFFF)
    except TransportError as err:
        if pid is None or session_timeout is None:
            return failed_result(err)
        why = (
            f"master pid {pid} runs but its connection opened no session within "
            f"{session_timeout:g} s ({err.detail})"
        )
        return MuxResult(Master.UNRESPONSIVE, pid, why)
    return MuxResult(Master.ALIVE, pid, f"master running (pid {pid})")


def _open_session(conn: unixsock.Connection, request_id: int) -> None:
    """Request a PROBE_COMMAND session on /dev/null; return once the client's sshd confirmed it."""
    conn.send(framing.encode_new_session(request_id, PROBE_COMMAND))
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(3):  # the session's stdin, stdout and stderr
            conn.send_fd(null)
    finally:
        os.close(null)
    conn.receive(framing.frame_length, lambda body: framing.parse_session_opened(body, request_id))


def terminate(path: Path, timeout: float) -> MuxResult:
    """Ask the master to exit, like ``ssh -O exit``; return its last known status."""
    before = check(path, timeout)
    if not before.alive:
        return before
    try:
        reply_type = _request(path, timeout, framing.MUX_C_TERMINATE)
    except TransportError as err:
        return failed_result(err, before.pid)
    if reply_type != framing.MUX_S_OK:
        return MuxResult(Master.ALIVE, before.pid, f"master refused to exit ({reply_type:#010x})")
    return MuxResult(Master.TERMINATED, before.pid, f"master pid {before.pid} asked to exit")


def stop_listening(path: Path, timeout: float) -> MuxResult:
    """Ask the master to remove its socket and take no new sessions, like ``ssh -O stop``.

    Its own sessions run on; it exits once they end (or its connection dies).
    """
    try:
        reply_type = _request(path, timeout, framing.MUX_C_STOP_LISTENING)
    except TransportError as err:
        return failed_result(err)
    if reply_type != framing.MUX_S_OK:
        return MuxResult(Master.ALIVE, None, f"master refused to stop ({reply_type:#010x})")
    return MuxResult(Master.STOPPED, None, "master stopped listening")


def _request(path: Path, timeout: float, msg_type: int) -> int:
    """Send one request that carries only its id; return the reply's type. Raises TransportError."""
    request_id = (os.getpid() + 1) & 0xFFFFFFFF
    with _connect(path, timeout) as conn:
        return conn.exchange(
            framing.encode(msg_type, request_id), framing.frame_length, framing.parse_type
        )
