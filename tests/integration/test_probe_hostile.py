"""Whatever listens on the agent socket is untrusted: the probe never hangs or balloons."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backuppc_agent.agent.probe import Probed, probe
from backuppc_agent.unixsock import Failure
from tests.helpers import cli, make_setup
from tests.hostile_support import listener

Behaviour = Callable[[socket.socket], None]


def never_answers(conn: socket.socket) -> None:
    time.sleep(3)


def huge_length(conn: socket.socket) -> None:
    conn.recv(16)
    conn.sendall(b"\xff\xff\xff\xff" + b"\x0c" * 64)
    time.sleep(1)


def huge_count(conn: socket.socket) -> None:
    conn.recv(16)
    conn.sendall(struct.pack(">IB", 5, 12) + b"\xff\xff\xff\xff")


def garbage(conn: socket.socket) -> None:
    conn.recv(16)
    conn.sendall(b"\x00\x00\x00\x09garbage!!")


def wrong_type(conn: socket.socket) -> None:
    conn.recv(16)
    conn.sendall(b"\x00\x00\x00\x01\x06")


def truncated(conn: socket.socket) -> None:
    conn.recv(16)
    conn.sendall(b"\x00\x00\x01\x00\x0c\x00")


def slow_drip(conn: socket.socket) -> None:
    conn.recv(16)
    for byte in struct.pack(">IBI", 5, 12, 0):
        conn.sendall(bytes((byte,)))
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("behaviour", "status", "detail"),
    [
        (never_answers, Failure.TIMEOUT, "did not answer in time"),
        (huge_length, Failure.BAD_REPLY, "4294967295-byte reply"),
        (huge_count, Failure.BAD_REPLY, "claims 4294967295 identities"),
        (garbage, Failure.BAD_REPLY, "message type 103"),
        (wrong_type, Failure.BAD_REPLY, "message type 6"),
        (truncated, Failure.BAD_REPLY, "closed the connection"),
        (slow_drip, Failure.TIMEOUT, "did not answer in time"),
    ],
)
def test_a_hostile_listener_gives_a_bounded_answer(
    tmp_path: Path, behaviour: Behaviour, status: Probed | Failure, detail: str
) -> None:
    path = tmp_path / "agent.socket"
    with listener(path, behaviour):
        started = time.monotonic()
        result = probe(path, 0.5)
        assert time.monotonic() - started < 1.5
    assert result.status is status
    assert detail in result.detail


def test_status_and_wait_stay_bounded_against_a_listener_that_never_answers(
    tmp_path: Path,
) -> None:
    setup = make_setup(tmp_path / "inst", agent={"probe_timeout_seconds": 0.3})
    with listener(setup.socket, never_answers):
        started = time.monotonic()
        status = cli("status", "--json", config=setup.config)
        waited = cli("wait", "--timeout", "1", config=setup.config)
        assert time.monotonic() - started < 6
    assert status.returncode == 1
    assert '"state": "down"' in status.stdout
    assert "did not answer in time" in status.stdout
    assert waited.returncode == 1


def test_nothing_at_the_path_and_a_stale_socket_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "agent.socket"
    assert probe(path, 0.5).status is Failure.MISSING
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    assert probe(path, 0.5).status is Failure.STALE


def test_a_listener_of_another_uid_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "agent.socket"
    with listener(path, wrong_type):
        result = probe(path, 0.5, expected_uid=12345)
    assert result.status is Failure.FOREIGN
    assert "not uid 12345" in result.detail
    assert result.peer_pid is not None
