"""A hostile agent that lists a key but answers sign requests slowly, with garbage, or never.

The signing probe must stay bounded by probe_timeout_seconds and the state
must say why the key does not count; status and the pre-dump hook are run as
real subprocesses against a real unix listener.
"""

from __future__ import annotations

import base64
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from backuppc_agent.agent import protocol
from tests.helpers import cli, make_setup
from tests.hostile_support import Behaviour, listener

SignReply = Callable[[socket.socket], None]


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def fake_agent(blob: bytes, on_sign: SignReply) -> Behaviour:
    """List one identity like ssh-agent does; hand sign requests to ``on_sign``."""

    def behave(conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            while True:
                (length,) = struct.unpack(">I", _recv_exact(conn, 4))
                body = _recv_exact(conn, length)
                if body[0] == protocol.SSH_AGENTC_REQUEST_IDENTITIES:
                    payload = struct.pack(">I", 1) + protocol.encode_string(blob)
                    conn.sendall(protocol.frame(12, payload + protocol.encode_string(b"hostile")))
                elif body[0] == protocol.SSH_AGENTC_SIGN_REQUEST:
                    on_sign(conn)
                else:
                    conn.sendall(protocol.frame(protocol.SSH_AGENT_FAILURE))
        except (EOFError, TimeoutError):
            return

    return behave


def slow(conn: socket.socket) -> None:
    time.sleep(3)
    conn.sendall(protocol.frame(protocol.SSH_AGENT_FAILURE))


def never(conn: socket.socket) -> None:
    conn.settimeout(5)
    while conn.recv(4096):
        pass


def garbage(conn: socket.socket) -> None:
    conn.sendall(b"\x00\x00\x00\x10" + b"SSH-2.0-garbage!")


def wrong_algorithm(conn: socket.socket) -> None:
    signature = protocol.encode_string(b"ssh-rsa") + protocol.encode_string(b"x" * 64)
    conn.sendall(protocol.frame(14, protocol.encode_string(signature)))


def huge(conn: socket.socket) -> None:
    conn.sendall(b"\xff\xff\xff\xff")


@pytest.mark.parametrize(
    ("on_sign", "reason"),
    [
        (slow, "agent did not sign in time"),
        (never, "agent did not sign in time"),
        (garbage, "agent answered the sign request with garbage"),
        (wrong_algorithm, "a 'ssh-rsa' signature for a ssh-ed25519 key"),
        (huge, "agent answered the sign request with garbage"),
    ],
)
def test_a_key_that_lists_but_does_not_sign_is_not_ready_and_the_probe_is_bounded(
    tmp_path: Path, keys: dict[str, Path], on_sign: SignReply, reason: str
) -> None:
    blob = base64.b64decode(Path(f"{keys['a']}.pub").read_text().split()[1])
    setup = make_setup(
        tmp_path / "inst", agent={"probe_timeout_seconds": 0.5}, hooks={"wait_seconds": 1}
    )
    with listener(setup.socket, fake_agent(blob, on_sign)):
        status = cli("status", config=setup.config)
        assert status.returncode == exitcodes.NOT_READY
        assert status.stdout.startswith("state:       waiting (key SHA256:")
        assert reason in status.stdout
        hook = cli("hook", "pre-dump", "--client", "c1", "--host", "h1", config=setup.config)
        assert hook.returncode == exitcodes.HOOK_NOT_READY
        assert "SSH keys loaded but not usable" in hook.stdout
        assert reason in hook.stdout
