"""Unix stream sockets with one deadline, for talking to untrusted local listeners.

Built on ``_socket`` rather than ``socket``: the public module converts its
constants into enums at import, which costs about 4 ms on every hook and
status call, and we need none of what it adds. Timeouts surface as
TimeoutError, refusals as ConnectionRefusedError, like with ``socket``.
"""

from __future__ import annotations

import _socket
import os
import struct
import time
from pathlib import Path

_PEERCRED = struct.Struct("3i")

Socket = _socket.socket


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (monotonic); raise TimeoutError when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def connect(path: Path, deadline: float) -> Socket:
    """Connect to the unix socket at ``path`` before ``deadline``; raise OSError."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(remaining(deadline))
        sock.connect(os.fsencode(path))
    except BaseException:
        sock.close()
        raise
    return sock


def peer_credentials(sock: Socket) -> tuple[int, int]:
    """(pid, uid) of the process on the other end, from SO_PEERCRED."""
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, _gid = _PEERCRED.unpack(raw)
    return pid, uid


def send_all(sock: Socket, data: bytes, deadline: float) -> None:
    """Send everything before ``deadline``; raise TimeoutError or OSError."""
    sock.settimeout(remaining(deadline))
    sock.sendall(data)


def recv_exact(sock: Socket, size: int, deadline: float) -> memoryview:
    """Read exactly ``size`` bytes before ``deadline``.

    Raises TimeoutError, or EOFError if the peer closes first (the message says
    how many bytes came).
    """
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        sock.settimeout(remaining(deadline))
        count = sock.recv_into(view[got:])
        if count == 0:
            raise EOFError(f"peer closed the connection after {got} of {size} bytes")
        got += count
    return view
