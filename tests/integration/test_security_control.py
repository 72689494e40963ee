"""Control sockets and their directory: never trusted when others could have put them there.

A real ssh-agent holds a key so the pre-dump hook gets to the master; ``[mux]
ssh`` is a recording stand-in. The control directory is refused when it is a
symlink, foreign-owned or writable by others, even when a master answers in
it; a socket of another user is never adopted or removed. Listeners of another
uid (SO_PEERCRED) bind as root, then drop to nobody before listen(): the socket
file is ours, only the peer credentials tell.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backuppc_agent.ssh import mux
from backuppc_agent.ssh import mux_framing as framing
from tests.beds import Bed
from tests.helpers import cli, listed_rows, make_setup, private_dir, stored_summary, wait_for
from tests.hostile_support import listener, runs_of

NOBODY = 65534
CLIENT = "web01"
HOST = "root@127.0.0.9"
needs_root = pytest.mark.root("needs root (chown, setuid)")

#: a well-behaved master (hello, then alive with its pid) that drops to nobody before listen()
AS_NOBODY = r"""
import os, socket, struct, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
os.setgroups([]); os.setgid(65534); os.setuid(65534)
server.listen(8)
print("listening", flush=True)
def frame(*words):
    body = b"".join(struct.pack(">I", w) for w in words)
    return struct.pack(">I", len(body)) + body
while True:
    conn, _ = server.accept()
    try:
        conn.sendall(frame(1, 4))
        conn.recv(64)
        request = conn.recv(64)
        if len(request) >= 12:
            conn.sendall(frame(0x80000005, struct.unpack(">I", request[8:12])[0], os.getpid()))
    except OSError:
        pass
    conn.close()
"""


def good_master(conn: object) -> None:
    """A same-uid master that answers hello and alive checks."""
    import socket  # noqa: PLC0415
    import struct  # noqa: PLC0415

    assert isinstance(conn, socket.socket)
    conn.sendall(framing.encode(framing.MUX_MSG_HELLO, framing.MUX_VERSION))
    conn.recv(64)
    request = conn.recv(64)
    if len(request) >= 12:
        request_id = struct.unpack(">I", request[8:12])[0]
        conn.sendall(framing.encode(framing.MUX_S_ALIVE, request_id, os.getpid()))


def spoil(directory: Path, how: str) -> None:
    """Make the control directory unsafe in one way (it exists afterwards)."""
    if how == "symlink":
        real = private_dir(directory.with_name("mux.real"))
        directory.symlink_to(real)
    elif how == "world-writable":
        private_dir(directory).chmod(0o777)
    else:
        os.chown(private_dir(directory), NOBODY, NOBODY)


NEEDLES = {
    "symlink": "is a symlink",
    "world-writable": "is writable by other users",
    "foreign": f"is owned by uid {NOBODY}",
}
SPOILERS = ["symlink", "world-writable", pytest.param("foreign", marks=needs_root)]


def assert_refused(recording_bed: Bed, done: subprocess.CompletedProcess[str], how: str) -> None:
    assert done.returncode == 3, done.stdout + done.stderr
    text = done.stdout + done.stderr
    assert f"control directory {recording_bed.control_dir} {NEEDLES[how]}" in text
    assert text.count("\n") == 1, text
    assert runs_of(recording_bed.ssh) == []


@pytest.mark.parametrize("how", SPOILERS)
def test_pre_dump_refuses_an_unsafe_control_dir(recording_bed: Bed, how: str) -> None:
    spoil(recording_bed.control_dir, how)
    done = recording_bed.pre_dump(CLIENT, HOST)
    assert_refused(recording_bed, done, how)
    assert stored_summary(recording_bed.state_dir).runs == {("pre-dump", "ssh-failed"): 1}


@pytest.mark.parametrize("how", SPOILERS)
def test_a_master_that_answers_in_an_unsafe_control_dir_is_not_used(
    recording_bed: Bed, how: str
) -> None:
    spoil(recording_bed.control_dir, how)
    with listener(recording_bed.socket(CLIENT), good_master):
        wait_for(
            lambda: mux.check(recording_bed.socket(CLIENT), 1.0).alive
        )  # it would pass for a master
        hook = recording_bed.pre_dump(CLIENT, HOST)
        session = cli("master", "ssh", CLIENT, HOST, "true", config=recording_bed.config)
    assert_refused(recording_bed, hook, how)
    assert_refused(recording_bed, session, how)


@needs_root
def test_a_stale_control_socket_of_another_user_is_neither_used_nor_removed(
    recording_bed: Bed,
) -> None:
    import socket  # noqa: PLC0415

    private_dir(recording_bed.control_dir)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(recording_bed.socket(CLIENT)))
    os.chown(recording_bed.socket(CLIENT), NOBODY, NOBODY)
    done = recording_bed.pre_dump(CLIENT, HOST)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"is owned by uid {NOBODY}" in done.stdout
    assert recording_bed.socket(CLIENT).is_socket()
    assert runs_of(recording_bed.ssh) == []


@needs_root
def test_a_master_of_another_uid_is_foreign_everywhere(recording_bed: Bed) -> None:
    private_dir(recording_bed.control_dir)
    server = subprocess.Popen(
        ["/usr/bin/python3", "-c", AS_NOBODY, str(recording_bed.socket(CLIENT))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == "listening\n"
        assert (
            recording_bed.socket(CLIENT).stat().st_uid == 0
        )  # the file is ours: only SO_PEERCRED tells
        hook = recording_bed.pre_dump(CLIENT, HOST)
        check = cli("master", "check", CLIENT, config=recording_bed.config)
        listed = cli("master", "list", config=recording_bed.config)
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
    assert hook.returncode == 6, hook.stdout + hook.stderr
    assert f"served by uid {NOBODY}" in hook.stdout
    assert check.returncode == 1
    assert f"served by uid {NOBODY}" in check.stdout
    assert listed_rows(listed.stdout)[0].startswith(
        f"{CLIENT}\tdead (control socket {recording_bed.socket(CLIENT)} is served by"
    )
    assert recording_bed.socket(CLIENT).is_socket()  # never removed: it is not ours to clear
    assert runs_of(recording_bed.ssh) == []


@needs_root
def test_the_supervisor_never_adopts_an_agent_socket_served_by_another_uid(
    tmp_path: Path,
) -> None:
    setup = make_setup(tmp_path / "inst")
    server = subprocess.Popen(
        ["/usr/bin/python3", "-c", AS_NOBODY, str(setup.socket)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == "listening\n"
        done = cli("run", config=setup.config, timeout=20)
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
    assert done.returncode == 3, done.stderr
    assert f"is served by uid {NOBODY}" in done.stderr
    assert setup.socket.is_socket()  # left alone
