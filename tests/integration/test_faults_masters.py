"""Faults under a live master: the master SIGKILLed mid-transfer, the client's sshd restarted,
the connection killed, the client gone silent. Real ssh-agent, sshd on 127.0.0.61, masters.

Authentications are counted in sshd's log ("Accepted publickey"): a session that rides
a master adds none, a master adds one, so "the stale socket never disables
multiplexing" is a count.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent.ssh import mux
from backuppc_agent.unixsock import Failure
from tests.beds import Bed
from tests.faults_support import connection_processes, fault_bed
from tests.helpers import CLI, wait_for
from tests.sshd import Sshd, needs_root, running_sshd, user_processes

pytestmark = needs_root

ADDRESS = "127.0.0.61"
CLIENT = "fm-client"
CONNECT_TIMEOUT = 5


@pytest.fixture
def sshd(keys: dict[str, Path]) -> Iterator[Sshd]:
    with running_sshd(ADDRESS, keys["a"]) as server:
        yield server


@pytest.fixture
def bed(agent: Path, sshd: Sshd) -> Iterator[Bed]:
    with fault_bed(agent, sshd, connect_timeout=CONNECT_TIMEOUT) as installation:
        yield installation


def _master_pid(bed: Bed) -> int:
    status = mux.check(bed.socket(CLIENT), 1.0)
    assert status.alive, status
    assert status.pid is not None
    return status.pid


def _remote(needle: str) -> list[tuple[int, str]]:
    return [p for p in user_processes("bpaclient") if p[1].startswith(needle)]


@contextlib.contextmanager
def _transfer(bed: Bed) -> Iterator[subprocess.Popen[bytes]]:
    """A transfer through the wrapper, as rsync_bpc runs it: the client streams zeros."""
    job = subprocess.Popen(
        [CLI, "--config", str(bed.config), "master", "ssh", CLIENT, bed.host, "cat /dev/zero"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _remote("cat /dev/zero"), timeout=10)
        yield job
    finally:
        job.kill()
        job.wait()


def _kill_master_mid_transfer(bed: Bed) -> int:
    """Open the master, start a transfer on it, SIGKILL the master; return its pid."""
    assert bed.pre_dump(CLIENT).returncode == 0
    old = _master_pid(bed)
    with _transfer(bed) as job:
        os.kill(old, signal.SIGKILL)
        assert job.wait(timeout=10) == 255  # the session died with its master
    wait_for(lambda: not _remote("cat /dev/zero"), timeout=5)  # the client's side ended too
    assert mux.check(bed.socket(CLIENT), 1.0).status is Failure.STALE
    return old


def test_a_master_killed_mid_transfer_is_replaced_by_the_next_pre_dump(bed: Bed) -> None:
    old = _kill_master_mid_transfer(bed)
    before = bed.sshd.accepted_publickey()
    done = bed.pre_dump(CLIENT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "opened" in done.stdout
    assert "removing dead control socket" in done.stderr
    new = _master_pid(bed)
    assert new != old
    for _ in range(3):
        assert bed.session(CLIENT, "true").returncode == 0
    assert "reused" in bed.pre_dump(CLIENT).stdout
    assert bed.sshd.accepted_publickey() - before == 1  # the new master's; sessions rode it
    assert _master_pid(bed) == new


def test_after_a_master_is_killed_the_next_session_becomes_the_master(bed: Bed) -> None:
    """No pre hook in between (BackupPC's next share): ssh replaces the stale socket itself."""
    old = _kill_master_mid_transfer(bed)
    before = bed.sshd.accepted_publickey()
    for _ in range(3):
        assert bed.session(CLIENT, "true").returncode == 0
    new = _master_pid(bed)
    assert new != old
    assert "reused" in bed.pre_dump(CLIENT).stdout
    assert bed.sshd.accepted_publickey() - before == 1


def test_restarting_sshd_leaves_the_masters_connection_up_and_sessions_ride_it(
    bed: Bed, sshd: Sshd
) -> None:
    """Like `systemctl restart ssh`: only the listener restarts; connections live on."""
    assert bed.pre_dump(CLIENT).returncode == 0
    master = _master_pid(bed)
    connection = connection_processes(sshd)
    assert connection
    try:
        assert sshd.proc is not None
        os.kill(sshd.proc.pid, signal.SIGTERM)
        sshd.proc.wait(timeout=5)
        sshd.start()
        before = sshd.accepted_publickey()
        done = bed.session(CLIENT, "echo", "through the old connection")
        assert done.stdout == "through the old connection\n", done.stderr
        again = bed.pre_dump(CLIENT)
        assert again.returncode == 0
        assert f"pid {master}, reused" in again.stdout
        assert sshd.accepted_publickey() == before
    finally:
        for pid in connection:  # children of the old listener: sshd.stop() cannot see them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_when_the_connection_dies_the_master_exits_and_the_next_pre_dump_opens_a_new_one(
    bed: Bed, sshd: Sshd
) -> None:
    """sshd stopped with its connections (a reboot of the client): the master sees EOF."""
    assert bed.pre_dump(CLIENT).returncode == 0
    old = _master_pid(bed)
    sshd.stop()
    wait_for(lambda: not bed.socket(CLIENT).exists(), timeout=5)  # it exited, removing it
    started = time.monotonic()
    down = bed.pre_dump(CLIENT)
    assert time.monotonic() - started < CONNECT_TIMEOUT + 5
    assert down.returncode == 6
    assert "Connection refused" in down.stdout
    assert down.stdout.count("\n") == 1
    sshd.start()
    up = bed.pre_dump(CLIENT)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "opened" in up.stdout
    assert _master_pid(bed) != old
    assert bed.session(CLIENT, "true").returncode == 0


def test_a_master_whose_client_went_silent_is_retired_and_replaced_within_the_bound(
    bed: Bed, sshd: Sshd
) -> None:
    """The client freezes (SIGSTOP on its connection: no FIN, no RST, like a power cut).

    The master process still answers the alive check, but no session on it can
    open; until ServerAliveInterval x 3 kills it, every transfer would hang.
    """
    assert bed.pre_dump(CLIENT).returncode == 0
    old = _master_pid(bed)
    frozen = connection_processes(sshd)
    assert frozen
    try:
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        done = bed.pre_dump(CLIENT)
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        assert "opened" in done.stdout
        assert "retiring ssh master" in done.stderr
        assert f"master pid {old} runs but its connection opened no session" in done.stderr
        assert elapsed < CONNECT_TIMEOUT + 5 + 2
        assert _master_pid(bed) != old
        session = bed.session(CLIENT, "echo", "no hang", timeout=15)  # a hang fails here
        assert session.stdout == "no hang\n"
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
