"""Send the BackupPC server a message over its Unix socket, bounded in time.

BackupPC::Lib ServerConnect/ServerMesg: the server sends a seed line; the client
``B64MD5 MESSAGE\\n`` (``digest``); the server one reply line. Trap: the server does
not ignore SIGPIPE, so a client hanging up before the seed or reply kills BackupPC: a
failed query leaves its socket to a drain thread; with MAX_DRAINS pending, none starts.
Not BackupPC_serverMesg: one killed at a timeout would hang up.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import threading
import time
from pathlib import Path

from backuppc_agent import unixsock
from backuppc_agent.backuppc import confdir
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError

SOCKET_NAME = "BackupPC.sock"
#: A status reply of thousands of hosts is a few MiB at most.
MAX_REPLY_BYTES = 32 * 1024 * 1024
DRAIN_SECONDS = 300.0
MAX_DRAINS = 2
#: ``send``'s bound; BackupPC answers ``backup all`` and ``log TEXT`` with one short line.
SEND_SECONDS = 10.0
MAX_SEND_REPLY_CHARS = 300
#: The name of a thread that reads what the server still owes a failed query, then closes.
DRAIN_THREAD = "backuppc-drain"


class ServerError(BackupPCAgentError):
    """The BackupPC server did not answer (down, busy, refused, or too slow)."""


def digest(seed: bytes, count: int, secret: str, message: str) -> str:
    """BackupPC's message digest: Perl's Digest::MD5 b64digest (base64, no padding)."""
    md5 = hashlib.md5(  # noqa: S324  (BackupPC's protocol)
        seed + str(count).encode() + secret.encode("utf-8", "surrogateescape") + message.encode()
    )
    return base64.b64encode(md5.digest()).decode().rstrip("=")


def query(run_dir: Path, secret: str, message: str, timeout: float) -> str:
    """Send ``message`` to RUN_DIR/BackupPC.sock; its reply line, else raise ServerError."""
    if sum(thread.name == DRAIN_THREAD for thread in threading.enumerate()) >= MAX_DRAINS:
        raise ServerError(f"{MAX_DRAINS} earlier queries still wait for the server: not asking")
    deadline = time.monotonic() + timeout
    try:
        # BackupPC's own user serves it, whoever we are (root, the exporter's user).
        conn = unixsock.connect_any(run_dir / SOCKET_NAME, deadline, "server socket", "server")
    except unixsock.TransportError as err:
        raise ServerError(f"BackupPC server: {err.detail}") from err
    return _exchange(conn.sock, secret, message, deadline)


def send(config: Config, *words: str) -> str:
    """Send the words as one message signed with config.pl's secret; its reply, or ServerError."""
    try:
        settings = confdir.ConfDir(config.backuppc.conf_dir, config.backuppc.top_dir).main()
    except BackupPCAgentError as err:
        raise ServerError(f"cannot read {err}") from err
    if settings is None:
        raise ServerError(f"cannot read {config.backuppc.conf_dir / 'config.pl'}: no such file")
    secret = confdir.server_secret(settings)
    reply = query(config.backuppc.run_dir, secret, " ".join(words), SEND_SECONDS)
    return reply[:MAX_SEND_REPLY_CHARS]


def _exchange(sock: socket.socket, secret: str, message: str, deadline: float) -> str:
    """Seed, message, reply; on a failure the server owes one line (seed or reply): drain it."""
    reader = _LineReader(sock)
    try:
        seed = reader.line(deadline)
        sock.sendall(f"{digest(seed, 0, secret, message)} {message}\n".encode())
        reply = reader.line(deadline)
    except (OSError, ServerError) as err:
        threading.Thread(target=_drain, args=(sock,), name=DRAIN_THREAD, daemon=True).start()
        raise ServerError(f"BackupPC server: {_reason(err)}") from err
    sock.close()
    return reply.decode("utf-8", "replace").rstrip("\r\n")


def _reason(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "no answer in time"
    return str(err) if isinstance(err, ServerError) else (getattr(err, "strerror", "") or str(err))


class _LineReader:
    """Reads newline-terminated lines from a socket within a deadline and a size bound."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self, deadline: float) -> bytes:
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ServerError("the server closed the connection")
            self.buffer += chunk
            if len(self.buffer) > MAX_REPLY_BYTES:
                raise ServerError(f"reply longer than {MAX_REPLY_BYTES} bytes")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


def _drain(sock: socket.socket) -> None:
    """Close ``sock`` once the server has written the line it owes, or DRAIN_SECONDS passed."""
    deadline = time.monotonic() + DRAIN_SECONDS
    with sock, contextlib.suppress(OSError):
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk or b"\n" in chunk:
                return
