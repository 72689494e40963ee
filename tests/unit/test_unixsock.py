"""The one Unix-socket transport: round trips, and every failure mapped to one kind."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backuppc_agent import unixsock
from backuppc_agent.agent.probe import probe
from backuppc_agent.agent.protocol import Identity, encode_string
from backuppc_agent.agent.signing import sign_keys
from backuppc_agent.errors import ProtocolError
from backuppc_agent.ssh import mux
from backuppc_agent.unixsock import Failure, TransportError
from tests.hostile_support import listener, silent

_U32 = struct.Struct(">I")
Parse = Callable[[bytes], object]


def length(header: bytes) -> int:
    size: int = _U32.unpack(header)[0]
    if size > 1000:
        raise ProtocolError(f"frame of {size} bytes is too long")
    return size


def frame(body: bytes) -> bytes:
    return _U32.pack(len(body)) + body


def request(
    path: Path, message: bytes, deadline: float, length_of: Callable[[bytes], int], parse: Parse
) -> object:
    """One round trip on a fresh connection."""
    with unixsock.connect(path, deadline) as conn:
        return conn.exchange(message, length_of, parse)


def echo_upper(conn: socket.socket) -> None:
    """Answer each frame with the same frame in upper case, until the peer leaves."""
    conn.settimeout(2.0)
    while header := conn.recv(4):
        conn.sendall(frame(conn.recv(_U32.unpack(header)[0]).upper()))


def test_one_connection_carries_several_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with listener(path, echo_upper), unixsock.connect(path, time.monotonic() + 2.0) as conn:
        assert conn.exchange(frame(b"one"), length, bytes) == b"ONE"
        assert conn.exchange(frame(b"two"), length, bytes) == b"TWO"
        assert (conn.peer_pid, conn.peer_uid) == (os.getpid(), os.getuid())


def test_parse_decides_the_value_of_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with listener(path, echo_upper):
        reply = request(path, frame(b"abc"), time.monotonic() + 2.0, length, len)
    assert reply == 3


def reads_then_announces_too_much(conn: socket.socket) -> None:
    """Read the request, then announce a 5000-byte reply (reading first: hanging up
    with the request unread would race the caller's send into a broken pipe)."""
    conn.recv(5)
    conn.sendall(_U32.pack(5000))


def test_a_reply_the_caller_cannot_decode_is_a_bad_reply(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with listener(path, reads_then_announces_too_much):
        with pytest.raises(TransportError, match="5000 bytes is too long") as caught:
            request(path, frame(b"x"), time.monotonic() + 2.0, length, bytes)
    assert caught.value.failure is Failure.BAD_REPLY
    assert caught.value.peer_pid == os.getpid()


def reads_then_hangs_up_midway(conn: socket.socket) -> None:
    """Read the request, announce 100 bytes, send two, hang up (no reset: nothing unread)."""
    conn.recv(5)
    conn.sendall(_U32.pack(100) + b"\0\0")


def test_a_peer_that_hangs_up_mid_frame_says_how_much_came(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with listener(path, reads_then_hangs_up_midway):
        with pytest.raises(TransportError, match="closed the connection after 2 of 100") as caught:
            request(path, frame(b"x"), time.monotonic() + 2.0, length, bytes)
    assert caught.value.failure is Failure.BAD_REPLY


def test_a_silent_peer_times_out_at_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with listener(path, silent):
        with pytest.raises(TransportError, match=r"listener \(pid \d+\) did not answer") as caught:
            request(path, frame(b"x"), time.monotonic() + 0.2, length, bytes)
    assert caught.value.failure is Failure.TIMEOUT


def test_a_listener_of_another_uid_is_foreign_before_any_byte_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "s"
    other = os.getuid() + 1
    with listener(path, echo_upper):
        with pytest.raises(TransportError, match=f"is served by uid {os.getuid()}") as caught:
            unixsock.connect(path, time.monotonic() + 2.0, expected_uid=other)
    assert caught.value.failure is Failure.FOREIGN
    assert caught.value.peer_uid == os.getuid()


def test_connect_failures_map_to_missing_refused_and_error(tmp_path: Path) -> None:
    deadline = time.monotonic() + 1.0
    stale = tmp_path / "stale"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()  # bound, never listening: what a SIGKILLed listener leaves
    (tmp_path / "file").write_text("")
    kinds = {}
    for name in ("none", "stale", "file"):
        with pytest.raises(TransportError) as caught:
            unixsock.connect(tmp_path / name, deadline, what="test socket")
        kinds[name] = (caught.value.failure, caught.value.detail)
    assert kinds["none"] == (Failure.MISSING, f"no test socket at {tmp_path / 'none'}")
    assert kinds["stale"] == (Failure.STALE, f"nothing listens on {stale} (stale)")
    assert kinds["file"][0] in (Failure.STALE, Failure.ERROR)


def test_a_deadline_already_past_is_a_timeout_without_connecting(tmp_path: Path) -> None:
    with pytest.raises(TransportError) as caught:
        unixsock.connect(tmp_path / "none", time.monotonic() - 1.0)
    assert caught.value.failure is Failure.TIMEOUT


def test_probe_mux_and_signing_report_the_transport_failure_itself(tmp_path: Path) -> None:
    for failure in Failure:
        result = mux.failed_result(TransportError(failure, "why"), 42)
        assert (result.status, result.pid, result.detail) == (failure, 42, "why")
        assert not result.alive
    stale = tmp_path / "stale"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(stale))
    assert probe(stale, 0.5).status is Failure.STALE
    assert mux.check(stale, 0.5).as_dict()["status"] == "stale"
    key = Identity(encode_string(b"ssh-ed25519") + encode_string(bytes(32)), "k")
    check = sign_keys(stale, [key], 0.5)[key.fingerprint]
    assert (check.status, check.label) == (Failure.STALE, "error")
    assert check.reason == f"sign request failed (nothing listens on {stale} (stale))"
