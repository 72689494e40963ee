"""Hooks and masters against a real sshd on loopback and a real ssh-agent."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backuppc_agent.ssh import mux
from backuppc_agent.ssh.master import list_masters
from backuppc_agent.unixsock import Failure
from tests.beds import Bed, bed_for, make_bed
from tests.helpers import CLI, cli, stored_summary, wait_for
from tests.sshd import Sshd, kill_user_processes, needs_root, running_sshd, user_processes

pytestmark = needs_root

ADDRESS = "127.0.0.2"
OTHER_ADDRESS = "127.0.0.3"
CLIENT = "clienta"


@pytest.fixture(scope="module")
def server(keys: dict[str, Path]) -> Iterator[Sshd]:
    with running_sshd(ADDRESS, keys["a"]) as srv:
        yield srv


@pytest.fixture
def bed(agent: Path, server: Sshd) -> Iterator[Bed]:
    hooks = {"wait_seconds": 5, "connect_timeout_seconds": 5}
    with bed_for(agent, server, hooks=hooks, mux={"persist_seconds": 120}) as installation:
        try:
            yield installation
        finally:
            kill_user_processes("bpaclient", "sleep")


def test_pre_dump_opens_a_master_and_later_sessions_authenticate_no_more(bed: Bed) -> None:
    before = bed.sshd.accepted_publickey()
    first = bed.pre_dump(CLIENT)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "opened" in first.stdout
    assert all(line.startswith("backuppc-agent: ") for line in first.stdout.splitlines())
    status = mux.check(bed.socket(CLIENT), 1.0)
    assert status.alive
    for _ in range(5):
        assert bed.session(CLIENT, "true").returncode == 0
    generated = bed.root / "ssh_config"
    assert cli("ssh-config", "--write", str(generated), config=bed.config).returncode == 0
    for _ in range(3):
        done = subprocess.run(
            [
                "ssh",
                "-F",
                str(generated),
                "-o",
                f"ControlPath={bed.socket(CLIENT)}",
                bed.host,
                "echo",
                "hi",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.stdout == "hi\n", done.stderr
    again = bed.pre_dump(CLIENT)
    assert "reused" in again.stdout
    assert bed.sshd.accepted_publickey() - before == 1
    assert mux.check(bed.socket(CLIENT), 1.0).pid == status.pid


def test_a_stale_socket_is_replaced_by_a_working_master(bed: Bed) -> None:
    assert bed.pre_dump(CLIENT).returncode == 0
    old = mux.check(bed.socket(CLIENT), 1.0)
    assert old.pid is not None
    os.kill(old.pid, signal.SIGKILL)
    wait_for(lambda: mux.check(bed.socket(CLIENT), 1.0).status is Failure.STALE)
    before = bed.sshd.accepted_publickey()
    reopened = bed.pre_dump(CLIENT)
    assert reopened.returncode == 0, reopened.stdout
    new = mux.check(bed.socket(CLIENT), 1.0)
    assert new.alive
    assert new.pid != old.pid
    assert bed.session(CLIENT, "true").returncode == 0
    assert bed.sshd.accepted_publickey() - before == 1  # the session rode the new master


def test_concurrent_pre_dumps_for_one_client_end_with_one_master(bed: Bed) -> None:
    before = bed.sshd.accepted_publickey()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: bed.pre_dump(CLIENT), range(6)))
    assert [r.returncode for r in results] == [0] * 6, [r.stdout for r in results]
    assert sum("opened" in r.stdout for r in results) == 1
    masters = [m for m in list_masters(bed.control_dir) if m.alive]
    assert [m.client for m in masters] == [CLIENT]
    assert bed.sshd.accepted_publickey() - before == 1


def test_masters_of_different_clients_are_listed_by_client(bed: Bed) -> None:
    for client in ("c1", "c2", "c3"):
        assert bed.pre_dump(client).returncode == 0
    listed = cli("master", "list", "--json", config=bed.config)
    assert listed.returncode == 0
    assert '"client": "c1"' in listed.stdout
    infos = list_masters(bed.control_dir)
    assert [m.client for m in infos] == ["c1", "c2", "c3"]
    assert all(m.alive and m.opened and m.opened <= time.time() for m in infos)
    assert cli("master", "check", "c2", config=bed.config).returncode == 0
    assert cli("master", "close", "c2", config=bed.config).returncode == 0
    wait_for(lambda: not mux.check(bed.socket("c2"), 1.0).alive)
    assert cli("master", "check", "c2", config=bed.config).returncode == 1


def test_master_list_as_root_shows_the_backuppc_users_masters_and_says_whose(bed: Bed) -> None:
    assert bed.pre_dump(CLIENT).returncode == 0
    listed = cli("master", "list", config=bed.config)
    assert listed.returncode == 0, listed.stderr
    account = pwd.getpwnam("backuppc")
    whose, row = listed.stdout.splitlines()
    assert whose == f"masters of: backuppc (uid {account.pw_uid})"
    assert row.startswith(f"{CLIENT}\tup pid ")


def _remote_sleeps() -> list[tuple[int, str]]:
    return [p for p in user_processes("bpaclient") if p[1].startswith("sleep 30")]


def test_kill_remote_kills_a_long_running_command_and_its_children(bed: Bed) -> None:
    assert bed.pre_dump(CLIENT).returncode == 0
    job = subprocess.Popen(
        [
            CLI,
            "--config",
            str(bed.config),
            "master",
            "ssh",
            CLIENT,
            bed.host,
            "sh -c 'sleep 301 & trap \"\" TERM; sleep 302'",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(_remote_sleeps()) == 2)
        killed = cli("master", "kill-remote", CLIENT, config=bed.config)
        assert killed.returncode == 0, killed.stderr
        assert "killed 3 remote process" in killed.stdout
        assert _remote_sleeps() == []
        # the session ends too, and ssh reports that its command was killed (255)
        assert job.wait(timeout=10) == 255
    finally:
        job.kill()


def test_hostile_names_are_refused_before_any_path_or_ssh(bed: Bed) -> None:
    marker = Path("/tmp/bpa-pwned")
    before = bed.sshd.logtext().count("Connection from")
    cases = [
        ("--client", "../../etc", "--host", bed.host),
        ("--client", "-oProxyCommand=touch /tmp/bpa-pwned", "--host", bed.host),
        ("--client", "ok", "--host", "-oProxyCommand=touch /tmp/bpa-pwned"),
        ("--client", "a b", "--host", bed.host),
        ("--client", "x" * 200, "--host", bed.host),
        ("--client", "%h", "--host", bed.host),
    ]
    for case in cases:
        done = bed.hook("pre-dump", *case)
        assert done.returncode == 7, (case, done.stdout, done.stderr)
        assert done.stdout.startswith("backuppc-agent: refusing ")
        assert len(done.stdout.splitlines()) == 1
    assert not marker.exists()
    assert not bed.control_dir.exists() or list(bed.control_dir.iterdir()) == []
    assert bed.sshd.logtext().count("Connection from") == before
    summary = stored_summary(bed.state_dir)
    assert summary.runs[("pre-dump", "bad-name")] == len(cases)


def test_not_ready_fails_fast_with_one_clear_line(bed: Bed, tmp_path: Path) -> None:
    empty = tmp_path / "empty.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(empty)], stdout=subprocess.DEVNULL)
    try:
        wait_for(empty.exists)
        hooks = {"wait_seconds": 1, "connect_timeout_seconds": 5}
        config = make_bed(bed.root, empty, bed.sshd, hooks=hooks).config
        started = time.monotonic()
        done = cli("hook", "pre-dump", "--client", CLIENT, "--host", bed.host, config=config)
        elapsed = time.monotonic() - started
    finally:
        agent.kill()
        agent.wait()
    assert done.returncode == 5
    assert done.stdout.startswith("backuppc-agent: SSH keys not loaded; run 'ssh-add' as root")
    assert str(empty) in done.stdout
    assert 1.0 <= elapsed < 6
    assert not bed.socket(CLIENT).exists()


def test_post_dump_after_a_failure_kills_leftovers_and_still_exits_zero(bed: Bed) -> None:
    assert bed.pre_dump(CLIENT).returncode == 0
    job = subprocess.Popen(
        [CLI, "--config", str(bed.config), "master", "ssh", CLIENT, bed.host, "sleep 303"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(_remote_sleeps()) == 1)
        done = bed.hook("post-dump", "--client", CLIENT, "--host", bed.host, "--xfer-ok", "0")
        assert done.returncode == 0
        assert "killed 1 remote process" in done.stdout
        assert _remote_sleeps() == []
        bad = bed.hook("post-dump", "--client", "../x", "--xfer-ok", "1")
        assert bad.returncode == 0
    finally:
        job.kill()
    summary = stored_summary(bed.state_dir)
    assert summary.runs[("post-dump", "failed")] == 1


ABORT_PARENT = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
print("started", flush=True)
time.sleep(600)
"""


def test_an_aborted_transfer_closes_the_callers_pipe_and_leaves_nothing_running(
    bed: Bed,
) -> None:
    """Like rsync_bpc killed by BackupPC's SIGINT: its stderr pipe must reach EOF at once."""
    assert bed.pre_dump(CLIENT).returncode == 0
    # The remote command ignores end-of-input and TERM-less signals: only a kill ends it.
    command = "sh -c 'trap \"\" HUP INT; sleep 304 & sleep 305'"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ABORT_PARENT,
            CLI,
            "--config",
            str(bed.config),
            "master",
            "ssh",
            CLIENT,
            bed.host,
            command,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert parent.stdout is not None
    try:
        assert parent.stdout.readline() == b"started\n"
        wait_for(lambda: len(_remote_sleeps()) == 2)
        parent.send_signal(signal.SIGKILL)  # the caller dies; the wrapper holds its pipe
        started = time.monotonic()
        rest = parent.stdout.read()  # EOF only once every writer is gone
        assert time.monotonic() - started < 8
        assert b"aborted" in rest
        assert _remote_sleeps() == []
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
