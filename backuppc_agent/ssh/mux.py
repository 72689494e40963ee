"""A client for OpenSSH's ControlMaster socket (PROTOCOL.mux), every step under a deadline.

ALIVE_CHECK takes ~0.1 ms (``ssh -O check``: 5 ms); a NEW_SESSION confirmed by the
client's sshd proves the connection. The socket is untrusted: ``unixsock`` refuses
another uid's listener (ssh itself does not check); ``mux_framing`` bounds frames.
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
#: How long a master may take to answer one request (it answers in well under 1 ms).
CHECK_SECONDS = 1.0


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


def check(
    path: Path, timeout: float = CHECK_SECONDS, session_timeout: float | None = None
) -> MuxResult:
    """Ask the master on ``path`` whether it is alive; never blocks past ``timeout``.

    With ``session_timeout``, also open a session (``true``) that the client's sshd
    must confirm in time, else UNRESPONSIVE: a master whose client vanished (power
    cut, partition, frozen sshd) answers the alive check for ServerAliveInterval x 3
    while every session on it hangs.
    """
    request_id = _request_id(0)
    pid = None
    try:
        with _connect(path, timeout) as conn:
            alive = framing.encode(framing.MUX_C_ALIVE_CHECK, request_id)
            pid = conn.exchange(
                alive, framing.frame_length, lambda body: framing.parse_alive(body, request_id)
            )
            if session_timeout is not None:
                conn.deadline = time.monotonic() + session_timeout
                _open_session(conn, _request_id(1))
    except TransportError as err:
        if pid is None or session_timeout is None:
            return failed_result(err)
        why = (
            f"master pid {pid} runs but its connection opened no session within "
            f"{session_timeout:g} s ({err.detail})"
        )
        return MuxResult(Master.UNRESPONSIVE, pid, why)
    return MuxResult(Master.ALIVE, pid, f"master running (pid {pid})")


def _request_id(offset: int) -> int:
    """The uint32 id of a request: our pid plus ``offset``; the master's reply echoes it."""
    return (os.getpid() + offset) & 0xFFFFFFFF


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


def terminate(path: Path, timeout: float = CHECK_SECONDS) -> MuxResult:
    """Ask the master to exit, like ``ssh -O exit``; return its last known status."""
    before = check(path, timeout)
    if not before.alive:
        return before
    said = f"master pid {before.pid} asked to exit"
    return _order(path, timeout, framing.MUX_C_TERMINATE, before.pid, (Master.TERMINATED, said))


def stop_listening(path: Path, timeout: float = CHECK_SECONDS) -> MuxResult:
    """Ask the master to take no new sessions, like ``ssh -O stop`` (its own sessions run on)."""
    done = (Master.STOPPED, "master stopped listening")
    return _order(path, timeout, framing.MUX_C_STOP_LISTENING, None, done)


def _order(
    path: Path, timeout: float, msg_type: int, pid: int | None, done: tuple[Master, str]
) -> MuxResult:
    """Send a request that carries only its id: ``done`` on MUX_S_OK, else still ALIVE."""
    request_id = _request_id(1)
    try:
        with _connect(path, timeout) as conn:
            frame = framing.encode(msg_type, request_id)
            reply_type = conn.exchange(frame, framing.frame_length, framing.parse_type)
    except TransportError as err:
        return failed_result(err, pid)
    if reply_type != framing.MUX_S_OK:
        verb = "exit" if done[0] is Master.TERMINATED else "stop"
        return MuxResult(Master.ALIVE, pid, f"master refused to {verb} ({reply_type:#010x})")
    return MuxResult(done[0], pid, done[1])
