"""Ask the BackupPC server for its status over its Unix socket, bounded in time.

The protocol (BackupPC::Lib ServerConnect/ServerMesg): the server sends a
seed line; the client sends ``B64MD5 MESSAGE\\n`` where B64MD5 is the unpadded
base64 MD5 of seed + message count + $Conf{ServerMesgSecret} + message; the
server answers one line. For ``status info hosts queueLen`` that line is
Data::Dumper text (perldata reads it). ``send`` is BackupPC_serverMesg without
running it (one killed at a timeout would hang up on the server).

Trap: the server does not ignore SIGPIPE and shuts itself down on it. A client
that hangs up before the server has written its seed or its reply kills
BackupPC. So a query that runs out of time never closes its socket early: it
hands the socket to a drain thread that reads what the server still owes,
then closes it. At most ``MAX_DRAINS`` such sockets are pending; beyond that
no new query starts.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
import time
from pathlib import Path

from backuppc_agent.backuppc import confdir
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError

logger = logging.getLogger(__name__)

SOCKET_NAME = "BackupPC.sock"
#: A status reply of thousands of hosts is a few MiB at most.
MAX_REPLY_BYTES = 32 * 1024 * 1024
#: How long a drain thread waits for what the server still owes before closing anyway.
DRAIN_SECONDS = 300.0
MAX_DRAINS = 2
#: ``send``'s bound; BackupPC answers ``backup all`` and ``log TEXT`` with one short line.
SEND_SECONDS = 10.0
MAX_SEND_REPLY_CHARS = 300
_drains = 0
_drains_lock = threading.Lock()


class ServerError(BackupPCAgentError):
    """The BackupPC server did not answer (down, busy, refused, or too slow)."""


def digest(seed: bytes, count: int, secret: str, message: str) -> str:
    """BackupPC's message digest: Perl's Digest::MD5 b64digest (base64, no padding)."""
    md5 = hashlib.md5(  # noqa: S324  (BackupPC's protocol)
        seed + str(count).encode() + secret.encode("utf-8", "surrogateescape") + message.encode()
    )
    return base64.b64encode(md5.digest()).decode().rstrip("=")


def query(run_dir: Path, secret: str, message: str, timeout: float) -> str:
    """Send ``message`` to the server at RUN_DIR/BackupPC.sock; return its reply line.

    Raises ServerError. Never hangs up on the server before it has answered.
    """
    if _pending_drains() >= MAX_DRAINS:
        raise ServerError(f"{MAX_DRAINS} earlier queries still wait for the server: not asking")
    path = run_dir / SOCKET_NAME
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
    except OSError as err:
        sock.close()
        raise ServerError(f"cannot connect to {path}: {err.strerror or err}") from err
    return _exchange(sock, secret, message, time.monotonic() + timeout)


def send(config: Config, *words: str) -> str:
    """Send one message (words joined by spaces), signed with config.pl's secret.

    Return the reply line (at most MAX_SEND_REPLY_CHARS); raise ServerError.
    """
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
    """Seed, message, reply; on any failure the socket goes to a drain thread."""
    reader = _LineReader(sock)
    owed = 1  # lines the server will still write: its seed
    try:
        seed = reader.line(deadline)
        owed = 1  # without a message the server owes nothing more; with one, its reply
        sock.sendall(f"{digest(seed, 0, secret, message)} {message}\n".encode())
        reply = reader.line(deadline)
        owed = 0
    except (OSError, ServerError) as err:
        _drain(sock, reader, owed if reader.alive else 0)
        raise ServerError(f"BackupPC server: {_reason(err)}") from err
    sock.close()
    return reply.decode("utf-8", "replace").rstrip("\r\n")


def _reason(err: BaseException) -> str:
    if isinstance(err, TimeoutError | socket.timeout):
        return "no answer in time"
    return str(err) if isinstance(err, ServerError) else (getattr(err, "strerror", "") or str(err))


class _LineReader:
    """Reads newline-terminated lines from a socket within a deadline and a size bound."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.alive = True

    def line(self, deadline: float) -> bytes:
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                self.alive = False
                raise ServerError("the server closed the connection")
            self.buffer += chunk
            if len(self.buffer) > MAX_REPLY_BYTES:
                raise ServerError(f"reply longer than {MAX_REPLY_BYTES} bytes")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


def _pending_drains() -> int:
    with _drains_lock:
        return _drains


def _drain(sock: socket.socket, reader: _LineReader, owed: int) -> None:
    """Close ``sock`` once the server has written the ``owed`` lines (in a thread if any)."""
    global _drains  # noqa: PLW0603  (one count for the whole process)
    owed -= reader.buffer.count(b"\n")
    if owed <= 0:
        sock.close()
        return
    with _drains_lock:
        _drains += 1
    threading.Thread(target=_drain_thread, args=(sock, owed), daemon=True).start()


def _drain_thread(sock: socket.socket, owed: int) -> None:
    global _drains  # noqa: PLW0603
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        while owed > 0 and time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(65536)
            if not chunk:
                break
            owed -= chunk.count(b"\n")
    except OSError:
        logger.debug("draining the BackupPC server socket ended early")
    finally:
        sock.close()
        with _drains_lock:
            _drains -= 1
