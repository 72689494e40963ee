"""Fuzz the mux protocol client: any bytes from a control socket give a status, never a crash.

The parsers (frame length, hello, alive) must return a value or raise ProtocolError;
``mux.check`` against a listener that sends arbitrary bytes must return a
MuxResult within its deadline, alive only for a well-formed reply.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backuppc_agent.errors import ProtocolError
from backuppc_agent.ssh import mux
from backuppc_agent.ssh import mux_framing as framing
from backuppc_agent.unixsock import Failure

STATUSES = {
    mux.Master.ALIVE,
    Failure.MISSING,
    Failure.STALE,
    Failure.TIMEOUT,
    Failure.BAD_REPLY,
    Failure.FOREIGN,
    Failure.ERROR,
}
words = st.integers(min_value=0, max_value=2**32 - 1)


def frame(*values: int, tail: bytes = b"") -> bytes:
    body = b"".join(struct.pack(">I", value) for value in values) + tail
    return struct.pack(">I", len(body)) + body


def outcome(function: Callable[..., int], *args: object) -> tuple[int | None, str]:
    """(value, "") or (None, "STATUS: message") of a parser that raises ProtocolError."""
    try:
        return function(*args), ""
    except ProtocolError as err:  # what mux.check reports as a bad reply
        return None, f"bad-reply: {err}"


@given(st.binary(min_size=4, max_size=4))
def test_any_frame_length_is_a_bounded_size_or_a_mux_error(header: bytes) -> None:
    length, error = outcome(framing.frame_length, header)
    if length is None:
        assert error.startswith("bad-reply: ")
    else:
        assert 4 <= length <= framing.MAX_FRAME_BYTES


@given(st.binary(max_size=64))
@example(b"")
@example(struct.pack(">II", framing.MUX_MSG_HELLO, 3))
def test_any_hello_body_is_version_4_or_a_mux_error(body: bytes) -> None:
    version, error = outcome(framing.parse_hello, body)
    if version is None:
        assert error.startswith("bad-reply: ")
        assert "\n" not in error
    else:
        assert version == framing.MUX_VERSION


@given(st.binary(max_size=64), words)
@example(struct.pack(">III", framing.MUX_S_ALIVE, 7, 0), 7)
def test_any_alive_body_is_a_pid_or_a_mux_error(body: bytes, request_id: int) -> None:
    pid, error = outcome(framing.parse_alive, body, request_id)
    if pid is None:
        assert error.startswith("bad-reply: ")
    else:
        assert 0 <= pid <= 2**32 - 1
        assert body[:8] == struct.pack(">II", framing.MUX_S_ALIVE, request_id)


@given(words, words, st.binary(max_size=16))
def test_a_well_formed_alive_reply_always_parses(request_id: int, pid: int, tail: bytes) -> None:
    body = struct.pack(">III", framing.MUX_S_ALIVE, request_id, pid) + tail
    assert framing.parse_alive(body, request_id) == pid


class Replier:
    """A listener that sends the bytes of the current example to each connection, then closes."""

    def __init__(self, path: Path) -> None:
        self.reply = b""
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.server.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(self.reply)
                    conn.shutdown(socket.SHUT_WR)
                    conn.settimeout(0.5)
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.server.close()


@pytest.fixture(scope="module")
def replier() -> Iterator[tuple[Replier, Path]]:
    directory = Path(tempfile.mkdtemp(prefix="bpa-fz-"))
    path = directory / "m"
    served = Replier(path)
    try:
        yield served, path
    finally:
        served.close()
        path.unlink()
        directory.rmdir()


HELLO = frame(framing.MUX_MSG_HELLO, framing.MUX_VERSION)
#: mux.check's request id: our pid
REQUEST_ID = os.getpid() & 0xFFFFFFFF
replies = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda rest: HELLO + rest, st.binary(max_size=100)),
    st.builds(lambda values: HELLO + frame(*values), st.lists(words, max_size=5)),
    st.builds(lambda n: HELLO + struct.pack(">I", n), words),
)


@given(replies)
@example(HELLO + frame(framing.MUX_S_ALIVE, 0, 1))
@example(struct.pack(">I", 0xFFFFFFFF))
@example(HELLO + struct.pack(">I", framing.MAX_FRAME_BYTES) + b"\0" * 8)
def test_any_reply_to_a_check_gives_a_status_within_the_deadline(
    replier: tuple[Replier, Path], reply: bytes
) -> None:
    served, path = replier
    served.reply = reply
    started = time.monotonic()
    status = mux.check(path, 0.5)
    assert time.monotonic() - started < 1.5
    assert status.status in STATUSES
    assert "\n" not in status.detail
    if status.alive:
        # only a hello then an alive reply to our own request id is believed
        alive = reply[len(HELLO) + 4 : len(HELLO) + 12]
        assert reply.startswith(HELLO)
        assert alive == struct.pack(">II", framing.MUX_S_ALIVE, REQUEST_ID)
        assert status.pid is not None


@given(words, st.binary(max_size=8))
def test_a_hello_and_an_alive_reply_to_our_request_is_alive(
    replier: tuple[Replier, Path], pid: int, tail: bytes
) -> None:
    served, path = replier
    served.reply = HELLO + frame(framing.MUX_S_ALIVE, REQUEST_ID, pid, tail=tail)
    expected = mux.MuxResult(mux.Master.ALIVE, pid, f"master running (pid {pid})")
    assert mux.check(path, 0.5) == expected
