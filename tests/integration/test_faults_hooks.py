"""Hook faults: a client that does not answer, a full or read-only state dir, clock jumps.

Real processes throughout: ssh-agent, sshd on 127.0.0.62-64, a dead network in a
network namespace, a listener that never speaks SSH, tmpfs mounts, libfaketime.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent.ssh import mux
from backuppc_agent.unixsock import Failure
from tests.beds import Bed, kill_masters, processes
from tests.faults_support import (
    LIBFAKETIME,
    dropped_address,
    faketime_env,
    fault_bed,
    fill,
    set_clock,
    silent_listener,
    small_tmpfs,
)
from tests.helpers import (
    CLI,
    Setup,
    Supervisor,
    agent_holding,
    cli,
    kill_agents_on,
    make_setup,
    ssh_add,
    stored_summary,
    wait_for,
)
from tests.scrape import fetch, scrape
from tests.sshd import Sshd, needs_root, running_sshd, user_processes

CONNECT_TIMEOUT = 3
#: The documented bound on opening a master: ssh's ConnectTimeout, then 5 s more at most.
OPEN_BOUND_SECONDS = CONNECT_TIMEOUT + 5


@pytest.fixture
def lone_bed(agent: Path) -> Iterator[Bed]:
    """A ready agent and no sshd: the client is whatever address a test points at."""
    with fault_bed(agent, None, connect_timeout=CONNECT_TIMEOUT) as bed:
        yield bed


def _gives_up_in_bound(bed: Bed, host: str) -> None:
    started = time.monotonic()
    done = bed.pre_dump("fh-dead", host)
    elapsed = time.monotonic() - started
    assert done.returncode == 6, done.stdout + done.stderr
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith(f"backuppc-agent: cannot open ssh master to {host} for fh-dead")
    # ssh's own ConnectTimeout ended it, not the backstop that kills ssh after the bound
    assert "timed out" in done.stdout
    assert "did not finish within" not in done.stdout
    assert CONNECT_TIMEOUT - 0.5 <= elapsed <= OPEN_BOUND_SECONDS
    assert stored_summary(bed.state_dir).runs == {("pre-dump", "ssh-failed"): 1}
    assert not [p for p in processes() if f"ControlPath={bed.root}/" in p[1]]


@needs_root
def test_pre_dump_gives_up_on_a_client_that_drops_every_packet(lone_bed: Bed) -> None:
    """The TCP handshake never completes: no SYN-ACK, no RST, no ICMP."""
    with dropped_address() as address:
        _gives_up_in_bound(lone_bed, f"bpaclient@{address}")


@needs_root
def test_pre_dump_gives_up_on_a_client_that_accepts_and_never_sends_a_banner(
    lone_bed: Bed,
) -> None:
    with silent_listener("127.0.0.62") as held:
        _gives_up_in_bound(lone_bed, "bpaclient@127.0.0.62")
        assert held  # the connection was accepted: only the SSH banner never came


# --- a full or read-only state dir -------------------------------------------------------

SHORT_ROOT = "bpa-fs-"


@contextlib.contextmanager
def supervised_state_on_tmpfs(
    keys: dict[str, Path], port: int, sshd: Sshd
) -> Iterator[tuple[Setup, Supervisor]]:
    """A supervisor (agent, metrics on ``port``) whose state dir is a 1 MiB tmpfs, ready."""
    root = Path(tempfile.mkdtemp(prefix=SHORT_ROOT))
    known = root / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    setup = make_setup(
        root,
        metrics={"listen": f"127.0.0.1:{port}"},
        hooks={"wait_seconds": 5, "connect_timeout_seconds": CONNECT_TIMEOUT, "on_ready": "none"},
        mux={"control_dir": root / "mux", "known_hosts": known, "persist_seconds": 120},
    )
    state = setup.state_dir
    sup = Supervisor(setup)
    try:
        with small_tmpfs(state, "1m"):
            sup.start()
            assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
            wait_for(lambda: setup.published("ready"), timeout=10)
            yield setup, sup
            sup.stop()
            kill_masters(root)
    finally:
        sup.stop()
        kill_masters(root)
        kill_agents_on(setup.socket)
        subprocess.run(["rm", "-rf", str(root)], check=False)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` read-only for every new open, like a file system remounted ro.

    A read-only bind mount on top: `mount -o remount,ro` of the tmpfs itself is
    refused while a master's log or the supervisor's lock is open for writing.
    """
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True, timeout=10)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True, timeout=10)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=False, timeout=10)


def hook(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("hook", *args, config=setup.config, timeout=60)


#: The hung remote command (not a sleep: other tests' clean-up kills the client's sleeps).
LEFTOVER = "tail -f /dev/null"


def _leftovers() -> list[tuple[int, str]]:
    return [p for p in user_processes("bpaclient") if p[1].startswith(LEFTOVER)]


@contextlib.contextmanager
def leftover_job(setup: Setup, client: str, host: str) -> Iterator[None]:
    """A transfer that hangs on the client, as a failed dump leaves one."""
    job = subprocess.Popen(
        [CLI, "--config", str(setup.config), "master", "ssh", client, host, LEFTOVER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(_leftovers, timeout=10)
        yield
    finally:
        job.kill()
        job.wait()


NOT_RECORDED = "backuppc-agent: this hook run was not recorded: hook store "


@pytest.fixture
def sshd63(keys: dict[str, Path]) -> Iterator[Sshd]:
    with running_sshd("127.0.0.63", keys["a"]) as server:
        yield server


@needs_root
def test_a_full_state_dir_loses_hook_records_loudly_and_nothing_else(
    keys: dict[str, Path], free_port: int, sshd63: Sshd
) -> None:
    host = f"bpaclient@{sshd63.address}"
    with supervised_state_on_tmpfs(keys, free_port, sshd63) as (setup, sup):
        assert hook(setup, "pre-dump", "--client", "c1", "--host", host).returncode == 0
        metrics = f"http://127.0.0.1:{free_port}/metrics"
        assert scrape(metrics).value("hook_runs_total", hook="pre-dump", result="ok") == 1
        fill(setup.state_dir)
        opened = hook(setup, "pre-dump", "--client", "c2", "--host", host)
        reused = hook(setup, "pre-dump", "--client", "c1", "--host", host)
        with leftover_job(setup, "c1", host):
            post = hook(setup, "post-dump", "--client", "c1", "--host", host, "--xfer-ok", "0")
            assert _leftovers() == []
        killed = "killed 1 remote process"
        for done, says in ((opened, "opened"), (reused, "reused"), (post, killed)):
            assert done.returncode == 0, done.stdout + done.stderr
            assert says in done.stdout
            assert NOT_RECORDED in done.stdout, done.stdout
            assert "Traceback" not in done.stderr
        scraped = scrape(metrics)
        assert scraped.status == 200
        assert scraped.value("ready") == 1
        assert sup.proc is not None
        assert sup.proc.poll() is None


@needs_root
def test_a_read_only_state_dir_fails_only_what_needs_it_and_says_why(
    keys: dict[str, Path], free_port: int, sshd63: Sshd
) -> None:
    host = f"bpaclient@{sshd63.address}"
    with supervised_state_on_tmpfs(keys, free_port, sshd63) as (setup, sup):
        assert hook(setup, "pre-dump", "--client", "c1", "--host", host).returncode == 0
        with read_only(setup.state_dir):
            new = hook(setup, "pre-dump", "--client", "c3", "--host", host)
            reused = hook(setup, "pre-dump", "--client", "c1", "--host", host)
            with leftover_job(setup, "c1", host):
                post = hook(setup, "post-dump", "--client", "c1", "--xfer-ok", "0")
                assert _leftovers() == []
            ping = hook(setup, "ping", "--host", host)
            scraped = scrape(f"http://127.0.0.1:{free_port}/metrics")
            ready, _ = fetch(f"http://127.0.0.1:{free_port}/ready")
        assert new.returncode == 6, new.stdout + new.stderr
        assert "Read-only file system" in new.stdout
        for done in (reused, post, ping):
            assert done.returncode == 0, done.stdout + done.stderr
            assert NOT_RECORDED in done.stdout
            assert "Read-only file system" in done.stdout
        assert "killed 1 remote process" in post.stdout
        for done in (new, reused, post, ping):
            assert "Traceback" not in done.stderr
            assert "internal error" not in done.stderr
        assert scraped.status == 200
        assert ready == 200
        assert scraped.value("ready") == 1
        assert scraped.errors["hooks"] >= 1
        assert sup.proc is not None
        assert sup.proc.poll() is None
        # what was stored before is still there once the file system is writable again
        assert stored_summary(setup.state_dir).runs[("pre-dump", "ok")] == 1


# --- clock jumps -------------------------------------------------------------------------

needs_faketime = pytest.mark.skipif(
    not LIBFAKETIME.exists(), reason="needs Debian's faketime package"
)


def _hook_with_jump(bed: Bed, clock: Path, jump: str, host: str) -> tuple[int, str, float]:
    """Run pre-dump under libfaketime; one second in, the wall clock jumps by ``jump``."""
    set_clock(clock, "+0")
    started = time.monotonic()
    run = subprocess.Popen(
        [CLI, "--config", str(bed.config), "hook", "pre-dump", "--client", "fh-t", "--host", host],
        env=faketime_env(clock),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(1.0)
        set_clock(clock, jump)
        out, _ = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    return run.returncode, out, time.monotonic() - started


WAIT_SECONDS = 3


@needs_faketime
@pytest.mark.parametrize("jump", ["+86400", "-3600"])
def test_a_wall_clock_jump_neither_cuts_nor_stretches_the_wait_for_keys(
    tmp_path: Path, jump: str
) -> None:
    with agent_holding() as sock, fault_bed(sock, None, wait=WAIT_SECONDS) as bed:
        code, out, elapsed = _hook_with_jump(bed, tmp_path / "clock", jump, "bpaclient@127.0.0.64")
        assert code == 5, out
        assert f"gave up after {WAIT_SECONDS} s" in out
        assert WAIT_SECONDS - 0.2 <= elapsed <= WAIT_SECONDS + 3
        waits = stored_summary(bed.state_dir)
        assert waits.runs == {("pre-dump", "not-ready"): 1}
        assert WAIT_SECONDS - 0.2 <= waits.wait_sum <= WAIT_SECONDS + 1


@needs_root
@needs_faketime
def test_a_wall_clock_jump_does_not_stretch_the_connect_timeout(
    tmp_path: Path, lone_bed: Bed
) -> None:
    with silent_listener("127.0.0.64"):
        code, out, elapsed = _hook_with_jump(
            lone_bed, tmp_path / "clock", "-3600", "bpaclient@127.0.0.64"
        )
    assert code == 6, out
    assert "timed out" in out
    assert CONNECT_TIMEOUT - 0.5 <= elapsed <= OPEN_BOUND_SECONDS
    assert mux.check(lone_bed.socket("fh-t"), 1.0).status is Failure.MISSING
