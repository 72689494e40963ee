"""A client for OpenSSH's ControlMaster protocol (PROTOCOL.mux), with deadlines.

Frames are a uint32 big-endian length, then the payload, which starts with a
uint32 message type. Both sides say hello (version 4) first. We use
ALIVE_CHECK (is the master up, and its pid): about 0.1 ms instead of 5 ms for
an ``ssh -O check`` subprocess; NEW_SESSION, only as far as the client's sshd
confirming the channel (is the master's connection alive: one round trip, ~2 ms
on loopback); TERMINATE (``ssh -O exit``) and STOP_LISTENING (``ssh -O stop``).

The socket is untrusted: every read has a deadline, frames are bounded, and a
listener that runs as another user is not believed. Built on ``_socket``: the
public ``socket`` module costs ~4 ms at import (enum conversions, selectors),
which the hook's hot path cannot afford.
"""

from __future__ import annotations

import _socket
import os
import struct
import time
from pathlib import Path

from backuppc_agent.records import Record

MUX_MSG_HELLO = 0x00000001
MUX_C_NEW_SESSION = 0x10000002
MUX_C_ALIVE_CHECK = 0x10000004
MUX_C_TERMINATE = 0x10000005
MUX_C_STOP_LISTENING = 0x10000009
MUX_S_OK = 0x80000001
MUX_S_PERMISSION_DENIED = 0x80000002
MUX_S_FAILURE = 0x80000003
MUX_S_ALIVE = 0x80000005
MUX_S_SESSION_OPENED = 0x80000006
#: What a session that only proves the connection runs on the client: a shell builtin.
PROBE_COMMAND = b"true"
_NO_ESCAPE_CHAR = 0xFFFFFFFF
MUX_VERSION = 4
#: Real replies are a few dozen bytes; a hostile length must not allocate gigabytes.
MAX_FRAME_BYTES = 64 * 1024
_U32 = struct.Struct(">I")
_PEERCRED = struct.Struct("3i")


class MuxError(Exception):
    """The peer broke the protocol, closed early, or timed out (internal to this module)."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class MuxStatus(Record):
    """One check of a control socket.

    ``status`` is one of: alive, missing, stale (a socket nobody listens on),
    timeout, bad-reply, foreign (another user's listener), error.
    """

    alive: bool
    pid: int | None
    detail: str
    status: str = "alive"


def encode(msg_type: int, *words: int, strings: tuple[bytes, ...] = ()) -> bytes:
    """Build one frame: length, type, uint32 words, then SSH strings."""
    body = _U32.pack(msg_type) + b"".join(_U32.pack(word) for word in words)
    body += b"".join(_U32.pack(len(text)) + text for text in strings)
    return _U32.pack(len(body)) + body


def frame_length(header: bytes, limit: int = MAX_FRAME_BYTES) -> int:
    """Decode a 4-byte length; raise MuxError if it is too short or too large."""
    length: int = _U32.unpack(header)[0]
    if length < 4:
        raise MuxError("bad-reply", f"mux frame of {length} bytes is too short")
    if length > limit:
        raise MuxError("bad-reply", f"mux frame of {length} bytes exceeds {limit}")
    return length


def parse_words(body: bytes, count: int) -> tuple[int, ...]:
    """The first ``count`` uint32 words of a frame body; raise MuxError if short."""
    if len(body) < 4 * count:
        raise MuxError("bad-reply", f"mux reply of {len(body)} bytes is truncated")
    return struct.unpack_from(f">{count}I", body)


def parse_hello(body: bytes) -> int:
    """Return the master's protocol version; raise MuxError if it is not a hello."""
    msg_type, version = parse_words(body, 2)
    if msg_type != MUX_MSG_HELLO:
        raise MuxError("bad-reply", f"expected mux hello, got message type {msg_type:#010x}")
    if version != MUX_VERSION:
        raise MuxError("bad-reply", f"master speaks mux version {version}, not {MUX_VERSION}")
    return int(version)


def parse_alive(body: bytes, request_id: int) -> int:
    """Return the master's pid from a MUX_S_ALIVE reply; raise MuxError otherwise."""
    msg_type, reply_id, pid = parse_words(body, 3)
    if msg_type != MUX_S_ALIVE:
        raise MuxError("bad-reply", f"expected MUX_S_ALIVE, got message type {msg_type:#010x}")
    if reply_id != request_id:
        raise MuxError("bad-reply", f"reply to request {reply_id}, expected {request_id}")
    return int(pid)


def encode_new_session(request_id: int, command: bytes) -> bytes:
    """A MUX_C_NEW_SESSION frame: no tty, X11, agent or subsystem, no escape character."""
    body = _U32.pack(MUX_C_NEW_SESSION) + _U32.pack(request_id) + _string(b"")
    body += _U32.pack(0) * 4 + _U32.pack(_NO_ESCAPE_CHAR) + _string(b"") + _string(command)
    return _U32.pack(len(body)) + body


def _string(text: bytes) -> bytes:
    return _U32.pack(len(text)) + text


def parse_session_opened(body: bytes, request_id: int) -> None:
    """Accept a MUX_S_SESSION_OPENED reply to ``request_id``; raise MuxError otherwise."""
    msg_type, reply_id = parse_words(body, 2)
    if msg_type in (MUX_S_FAILURE, MUX_S_PERMISSION_DENIED):
        reason = body[12 : 12 + 200].decode("utf-8", "replace")
        shown = "".join(char if char.isprintable() else "?" for char in reason)
        raise MuxError("refused", f"master refused a session: {shown}")
    if msg_type != MUX_S_SESSION_OPENED:
        raise MuxError("bad-reply", f"expected MUX_S_SESSION_OPENED, got {msg_type:#010x}")
    if reply_id != request_id:
        raise MuxError("bad-reply", f"reply to request {reply_id}, expected {request_id}")


class _Conn:
    """One connection to a control socket, every read bounded by one deadline."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.deadline = deadline
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            self.sock.settimeout(self._left())
            self.sock.connect(os.fsencode(path))
        except BaseException:
            self.sock.close()
            raise

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise MuxError("timeout", "master did not answer in time")
        return left

    def peer_uid(self) -> int:
        raw = self.sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _PEERCRED.size)
        return int(_PEERCRED.unpack(raw)[1])

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self._left())
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise MuxError("timeout", "master did not read in time") from None
        except OSError as err:
            raise MuxError("bad-reply", f"master hung up: {err.strerror or err}") from err

    def send_fd(self, fd: int) -> None:
        """Pass ``fd`` to the master: one byte with SCM_RIGHTS, as ssh's mm_send_fd does."""
        self.sock.settimeout(self._left())
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))]
        try:
            self.sock.sendmsg([b"\0"], rights)
        except TimeoutError:
            raise MuxError("timeout", "master did not read in time") from None
        except OSError as err:
            raise MuxError("bad-reply", f"master hung up: {err.strerror or err}") from err

    def read_frame(self) -> bytes:
        return self._exact(frame_length(self._exact(4)))

    def _exact(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            self.sock.settimeout(self._left())
            try:
                chunk = self.sock.recv(size - len(chunks))
            except TimeoutError:
                raise MuxError("timeout", "master did not answer in time") from None
            except OSError as err:
                raise MuxError("bad-reply", f"master hung up: {err.strerror or err}") from err
            if not chunk:
                raise MuxError("bad-reply", "master closed the connection mid-reply")
            chunks += chunk
        return bytes(chunks)

    def close(self) -> None:
        self.sock.close()


def _check_peer(conn: _Conn, path: Path) -> None:
    """The client does not check who owns the master it talks to; we do."""
    uid = conn.peer_uid()
    if uid != os.getuid():
        raise MuxError("foreign", f"control socket {path} is served by uid {uid}")


def _session(path: Path, timeout: float) -> _Conn:
    """Connect, check the peer's uid and exchange hellos; raise MuxError or OSError."""
    conn = _Conn(path, time.monotonic() + timeout)
    try:
        _check_peer(conn, path)
        conn.send(encode(MUX_MSG_HELLO, MUX_VERSION))
        parse_hello(conn.read_frame())
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_failure(path: Path, err: OSError) -> MuxStatus:
    if isinstance(err, FileNotFoundError):
        return MuxStatus(False, None, f"no control socket at {path}", "missing")
    if isinstance(err, ConnectionRefusedError):
        return MuxStatus(False, None, f"nothing listens on {path} (stale)", "stale")
    if isinstance(err, TimeoutError):
        return MuxStatus(False, None, f"connect to {path} timed out", "timeout")
    return MuxStatus(False, None, f"cannot use {path}: {err.strerror or err}", "error")


def check(path: Path, timeout: float) -> MuxStatus:
    """Ask the master on ``path`` whether it is alive; never blocks past ``timeout``."""
    return _check(path, timeout, None)


def check_session(path: Path, timeout: float, session_timeout: float) -> MuxStatus:
    """Check the master, then prove its connection: open a session that runs ``true``.

    An alive check proves only that the local master process runs. A master
    whose client vanished without closing the connection (power cut, network
    partition, a frozen sshd) answers it for ServerAliveInterval x 3 while
    every session on it hangs. The session must be confirmed by the client's
    sshd within ``session_timeout``; otherwise the status is "unresponsive",
    with the master's pid. Only the channel's opening is awaited, not ``true``.
    """
    return _check(path, timeout, session_timeout)


def _check(path: Path, timeout: float, session_timeout: float | None) -> MuxStatus:
    request_id = os.getpid() & 0xFFFFFFFF
    try:
        conn = _session(path, timeout)
    except MuxError as err:
        return MuxStatus(False, None, str(err), err.status)
    except OSError as err:
        return _connect_failure(path, err)
    pid = None
    try:
        conn.send(encode(MUX_C_ALIVE_CHECK, request_id))
        pid = parse_alive(conn.read_frame(), request_id)
        if session_timeout is not None:
            conn.deadline = time.monotonic() + session_timeout
            _open_session(conn, (request_id + 1) & 0xFFFFFFFF)
    except MuxError as err:
        return _failed(pid, str(err), err.status, session_timeout)
    except OSError as err:
        return _failed(pid, f"mux exchange failed: {err.strerror or err}", "error", session_timeout)
    finally:
        conn.close()
    return MuxStatus(True, pid, f"master running (pid {pid})")


def _open_session(conn: _Conn, request_id: int) -> None:
    """Request a PROBE_COMMAND session on /dev/null; return once the client's sshd confirmed it."""
    conn.send(encode_new_session(request_id, PROBE_COMMAND))
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(3):  # the session's stdin, stdout and stderr
            conn.send_fd(null)
    finally:
        os.close(null)
    parse_session_opened(conn.read_frame(), request_id)


def _failed(pid: int | None, detail: str, status: str, session_timeout: float | None) -> MuxStatus:
    if pid is None:
        return MuxStatus(False, None, detail, status)
    why = (
        f"master pid {pid} runs but its connection opened no session within "
        f"{session_timeout:g} s ({detail})"
    )
    return MuxStatus(False, pid, why, "unresponsive")


def terminate(path: Path, timeout: float) -> MuxStatus:
    """Ask the master to exit, like ``ssh -O exit``; return its last known status."""
    before = check(path, timeout)
    if not before.alive:
        return before
    try:
        reply_type = _request(path, timeout, MUX_C_TERMINATE)
    except MuxError as err:
        return MuxStatus(False, before.pid, str(err), err.status)
    except OSError as err:
        return MuxStatus(False, before.pid, f"terminate failed: {err.strerror or err}", "error")
    if reply_type != MUX_S_OK:
        return MuxStatus(True, before.pid, f"master refused to exit ({reply_type:#010x})", "alive")
    return MuxStatus(False, before.pid, f"master pid {before.pid} asked to exit", "terminated")


def stop_listening(path: Path, timeout: float) -> MuxStatus:
    """Ask the master to remove its socket and take no new sessions, like ``ssh -O stop``.

    Its own sessions run on; it exits once they end (or its connection dies).
    """
    try:
        reply_type = _request(path, timeout, MUX_C_STOP_LISTENING)
    except MuxError as err:
        return MuxStatus(False, None, str(err), err.status)
    except OSError as err:
        return _connect_failure(path, err)
    if reply_type != MUX_S_OK:
        return MuxStatus(True, None, f"master refused to stop ({reply_type:#010x})", "alive")
    return MuxStatus(False, None, "master stopped listening", "stopped")


def _request(path: Path, timeout: float, msg_type: int) -> int:
    """Send one request that carries only its id; return the reply's type. Raises MuxError."""
    request_id = (os.getpid() + 1) & 0xFFFFFFFF
    conn = _session(path, timeout)
    try:
        conn.send(encode(msg_type, request_id))
        return parse_words(conn.read_frame(), 1)[0]
    finally:
        conn.close()
