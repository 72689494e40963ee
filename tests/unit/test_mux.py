"""The mux protocol client: frames, and hostile control sockets that must not hang it."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backuppc_agent.errors import ProtocolError
from backuppc_agent.ssh import mux
from backuppc_agent.ssh import mux_framing as framing
from backuppc_agent.unixsock import Failure
from tests.hostile_support import listener


def test_encode_builds_length_type_and_words() -> None:
    frame = framing.encode(framing.MUX_C_ALIVE_CHECK, 7)
    assert frame == struct.pack(">III", 8, 0x10000004, 7)
    session = framing.encode_new_session(7, b"true")
    words = struct.pack(">IIIIII", 0, 0, 0, 0, 0xFFFFFFFF, 0)
    assert session == struct.pack(">IIII", 44, 0x10000002, 7, 0) + words + b"\0\0\0\x04true"


def test_frame_length_refuses_tiny_and_huge_frames() -> None:
    assert framing.frame_length(struct.pack(">I", 12)) == 12
    with pytest.raises(ProtocolError, match="too short"):
        framing.frame_length(struct.pack(">I", 2))
    with pytest.raises(ProtocolError, match="exceeds"):
        framing.frame_length(struct.pack(">I", 0xFFFFFFFF))


def test_parsers_check_type_version_and_request_id() -> None:
    assert framing.parse_hello(struct.pack(">II", 1, 4)) == 4
    with pytest.raises(ProtocolError, match="version 3"):
        framing.parse_hello(struct.pack(">II", 1, 3))
    with pytest.raises(ProtocolError, match="expected mux hello"):
        framing.parse_hello(struct.pack(">II", 0x80000001, 4))
    assert framing.parse_alive(struct.pack(">III", 0x80000005, 9, 1234), 9) == 1234
    with pytest.raises(ProtocolError, match="request 8"):
        framing.parse_alive(struct.pack(">III", 0x80000005, 8, 1234), 9)
    with pytest.raises(ProtocolError, match="truncated"):
        framing.parse_alive(struct.pack(">II", 0x80000005, 9), 9)


def _read_frame(conn: socket.socket) -> bytes:
    length = struct.unpack(">I", conn.recv(4))[0]
    return conn.recv(length)


def _good(conn: socket.socket) -> None:
    conn.sendall(framing.encode(framing.MUX_MSG_HELLO, 4))
    _read_frame(conn)
    request = _read_frame(conn)
    msg_type, request_id = struct.unpack(">II", request)
    assert msg_type == framing.MUX_C_ALIVE_CHECK
    conn.sendall(framing.encode(framing.MUX_S_ALIVE, request_id, 4242))


def test_a_well_behaved_master_is_alive_with_its_pid(tmp_path: Path) -> None:
    path = tmp_path / "m"
    with listener(path, _good):
        status = mux.check(path, 1.0)
    assert status == mux.MuxResult(mux.Master.ALIVE, 4242, "master running (pid 4242)")
    assert status.alive


def _silent(conn: socket.socket) -> None:
    time.sleep(1.0)


def _huge(conn: socket.socket) -> None:
    conn.sendall(struct.pack(">I", 0xFFFFFFFF) + b"\0" * 64)


def _garbage(conn: socket.socket) -> None:
    conn.sendall(b"SSH-2.0-not-a-master\r\n" * 4)


def _hangs_up(conn: socket.socket) -> None:
    conn.sendall(struct.pack(">I", 100) + b"\0\0")


@pytest.mark.parametrize(
    ("behave", "status"),
    [
        (_silent, Failure.TIMEOUT),
        (_huge, Failure.BAD_REPLY),
        (_garbage, Failure.BAD_REPLY),
        (_hangs_up, Failure.BAD_REPLY),
    ],
)
def test_hostile_listeners_are_not_alive_and_never_hang(
    tmp_path: Path, behave: Callable[[socket.socket], None], status: mux.Master | Failure
) -> None:
    path = tmp_path / "m"
    with listener(path, behave):
        started = time.monotonic()
        result = mux.check(path, 0.3)
        elapsed = time.monotonic() - started
    assert not result.alive
    assert result.status is status
    assert elapsed < 0.8


def test_missing_and_stale_sockets_are_told_apart(tmp_path: Path) -> None:
    assert mux.check(tmp_path / "none", 0.5).status is Failure.MISSING
    stale = tmp_path / "stale"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()  # bound, never listening: connect is refused, like a SIGKILLed master's
    assert mux.check(stale, 0.5).status is Failure.STALE
    (tmp_path / "file").write_text("")
    assert mux.check(tmp_path / "file", 0.5).status in (Failure.STALE, Failure.ERROR)
