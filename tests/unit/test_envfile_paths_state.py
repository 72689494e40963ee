"""Env file rendering, safe paths and the published state file."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from backuppc_agent import paths, state
from backuppc_agent.agent import envfile
from backuppc_agent.errors import AgentError, UnsafePathError
from backuppc_agent.state import Snapshot, State


def test_env_file_matches_ssh_agent_s_output() -> None:
    text = envfile.render("sh", Path("/var/lib/backuppc/.ssh/agent.socket"), 42)
    assert text == (
        "SSH_AUTH_SOCK=/var/lib/backuppc/.ssh/agent.socket; export SSH_AUTH_SOCK;\n"
        "SSH_AGENT_PID=42; export SSH_AGENT_PID;\n"
        "echo Agent pid 42;\n"
    )


def test_env_quotes_unusual_paths_for_sh() -> None:
    text = envfile.render("sh", Path("/tmp/it's here/s"), None)
    assert text == "SSH_AUTH_SOCK='/tmp/it'\"'\"'s here/s'; export SSH_AUTH_SOCK;\n"


def test_env_other_shells() -> None:
    assert envfile.render("csh", Path("/s"), 7).splitlines()[0] == "setenv SSH_AUTH_SOCK /s;"
    assert envfile.render("fish", Path("/s"), 7).splitlines()[1] == "set -x SSH_AGENT_PID 7;"
    with pytest.raises(ValueError, match="unknown shell"):
        envfile.render("tcsh", Path("/s"), 7)


def test_private_dir_is_created_0700(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    paths.ensure_private_dir(target, "state")
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_unsafe_directories_are_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(UnsafePathError, match="writable by other users"):
        paths.check_dir(open_dir, "state")
    link = tmp_path / "link"
    link.symlink_to(open_dir)
    with pytest.raises(UnsafePathError, match="symlink"):
        paths.check_dir(link, "state")
    with pytest.raises(UnsafePathError, match="does not exist"):
        paths.check_dir(tmp_path / "nope", "state")


def test_socket_path_checks(tmp_path: Path) -> None:
    sock_path = tmp_path / "agent.socket"
    assert paths.check_socket_path(sock_path) is paths.SocketPath.MISSING
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock_path))
    assert paths.check_socket_path(sock_path) is paths.SocketPath.SOCKET
    sock_path.unlink(missing_ok=True)
    assert not sock_path.exists()
    sock_path.write_text("x")
    with pytest.raises(UnsafePathError, match="not a socket"):
        paths.check_socket_path(sock_path)


def test_private_files_are_written_atomically_0600_and_never_through_symlinks(
    tmp_path: Path,
) -> None:
    target = tmp_path / "state.json"
    paths.write_private_file(target, b"one")
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "linked"
    link.symlink_to(victim)
    with pytest.raises(UnsafePathError):
        paths.read_bounded(link, 4096)
    paths.write_private_file(link, b"new")
    assert victim.read_text() == "keep"
    assert not link.is_symlink()
    assert os.listdir(tmp_path).count(".state.json.tmp") == 0


def test_a_read_only_directory_is_reported_not_crashed(tmp_path: Path) -> None:
    if os.getuid() == 0:
        pytest.skip("root writes into read-only directories")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UnsafePathError, match="cannot write"):
            paths.write_private_file(tmp_path / "x", b"1")
    finally:
        tmp_path.chmod(0o700)


def test_state_round_trips_and_bad_files_read_as_none(tmp_path: Path) -> None:
    snap = Snapshot(
        State.READY, "1 key loaded", "/s", 10, 1, ("SHA256:x",), 5.0, 9, 2, True, True, 6.0
    )
    state.publish(tmp_path, snap)
    assert state.read(tmp_path) == snap
    (tmp_path / state.STATE_FILE).write_text("{not json")
    assert state.read(tmp_path) is None
    (tmp_path / state.STATE_FILE).write_text('{"state": "bogus"}')
    assert state.read(tmp_path) is None
    assert state.read(tmp_path / "missing") is None


def test_the_supervisor_lock_is_visible_and_exclusive(tmp_path: Path) -> None:
    lock = paths.FileLock(tmp_path / state.LOCK_FILE)
    assert not state.supervisor_running(tmp_path)
    assert lock.acquire(state.LOCK_WAIT_SECONDS)
    try:
        assert state.supervisor_running(tmp_path)
        assert not paths.FileLock(tmp_path / state.LOCK_FILE).acquire(0.1)
    finally:
        lock.release()
    assert not state.supervisor_running(tmp_path)


def test_a_lock_file_that_cannot_be_opened_raises_the_owners_error(tmp_path: Path) -> None:
    (tmp_path / "x.lock").symlink_to(tmp_path / "target")
    with pytest.raises(AgentError, match="cannot lock"):
        paths.FileLock(tmp_path / "x.lock", AgentError).acquire(0.1)
    assert not (tmp_path / "target").exists()


def test_a_bounded_read_refuses_more_than_its_limit_and_never_blocks_on_a_fifo(
    tmp_path: Path,
) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"x" * 10)
    assert paths.read_bounded(target, 10) == b"x" * 10
    with pytest.raises(UnsafePathError, match="larger than 9 bytes"):
        paths.read_bounded(target, 9)
    (tmp_path / "link").symlink_to(target)
    assert paths.read_bounded(tmp_path / "link", 10, follow=True) == b"x" * 10
    assert paths.read_bounded(tmp_path / "missing", 10) is None
    os.mkfifo(tmp_path / "fifo")
    assert paths.read_bounded(tmp_path / "fifo", 10) == b""
