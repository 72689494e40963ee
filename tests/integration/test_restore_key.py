"""The restore key: backups never offer it, restores use it alone, on a master of their own.

A real sshd on 127.0.0.89 that accepts both keys (no gate here: which key
authenticated is read from sshd's "Accepted publickey ... SHA256:..." lines),
a real ssh-agent, the hooks and the transfer wrapper as BackupPC runs them, and
a real rsync pushing through the wrapper as rsync_bpc's restore does.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from backuppc_agent.ssh import mux
from tests.beds import Bed, bed_for
from tests.helpers import (
    CLI,
    agent_holding,
    key_fingerprint,
    make_setup,
    running,
    ssh_add,
    wait_for,
)
from tests.sshd import Sshd, needs_root, running_sshd

pytestmark = needs_root

ADDRESS = "127.0.0.89"
CLIENT = "restoreclient"


@pytest.fixture(scope="module")
def server(keys: dict[str, Path]) -> Iterator[Sshd]:
    with running_sshd(ADDRESS, keys["a"], keys["b"]) as srv:
        yield srv


@pytest.fixture
def agent(keys: dict[str, Path]) -> Iterator[Path]:
    """An agent holding the backup key "a" only; key "b" is the restore key."""
    with agent_holding(keys["a"], keys["askpass"]) as sock:
        yield sock


@pytest.fixture
def bed(agent: Path, server: Sshd, keys: dict[str, Path]) -> Iterator[Bed]:
    with bed_for(
        agent,
        server,
        agent={"socket": agent, "restore_key": keys["b"], "keys": [keys["a"]]},
        hooks={"wait_seconds": 5, "connect_timeout_seconds": 5},
        mux={"persist_seconds": 120},
        backuppc={"user": "root"},  # doctor reads the agent as the BackupPC user: us here
    ) as installation:
        yield installation


def accepted(sshd: Sshd, key: Path) -> int:
    """How many logins sshd accepted with ``key``."""
    fingerprint = key_fingerprint(key)
    return sum(
        "Accepted publickey" in line and fingerprint in line for line in sshd.logtext().splitlines()
    )


def offered(sshd: Sshd, key: Path) -> int:
    """How many times a client offered ``key`` to sshd (accepted or not)."""
    return sshd.logtext().count(key_fingerprint(key))


def load_restore_key(agent: Path, keys: dict[str, Path]) -> None:
    assert ssh_add(agent, "-t", "600", str(keys["b"]), askpass=keys["askpass"]).returncode == 0


def restore_hook(bed: Bed, hook: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return bed.hook(hook, "--client", CLIENT, "--host", bed.host, *extra)


def push(bed: Bed, source: Path, destination: str) -> subprocess.CompletedProcess[str]:
    """rsync a file to the client through the wrapper: rsync's server receives, as in a restore."""
    wrapper = f"{CLI} --config {bed.config} master ssh {CLIENT}"
    return subprocess.run(
        ["rsync", "-e", wrapper, str(source), f"{bed.host}:{destination}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_backup_masters_never_offer_the_restore_key(
    bed: Bed, server: Sshd, agent: Path, keys: dict[str, Path]
) -> None:
    # The restore key first in the agent's list: ssh would offer it first, and sshd takes it.
    assert ssh_add(agent, "-D").returncode == 0
    load_restore_key(agent, keys)
    assert ssh_add(agent, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
    restore_offers = offered(server, keys["b"])
    done = bed.pre_dump(CLIENT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert bed.session(CLIENT, "true").returncode == 0
    assert offered(bed.sshd, keys["b"]) == restore_offers  # type: ignore[arg-type]
    assert accepted(bed.sshd, keys["a"]) >= 1  # type: ignore[arg-type]


def test_pre_restore_fails_fast_with_the_ssh_add_line_until_the_restore_key_is_loaded(
    bed: Bed, server: Sshd, agent: Path, keys: dict[str, Path]
) -> None:
    started = time.monotonic()
    refused = restore_hook(bed, "pre-restore")
    assert refused.returncode == exitcodes.HOOK_NOT_READY
    assert f"ssh-add -t 1h {keys['b']}" in refused.stdout
    assert time.monotonic() - started < 5  # no readiness wait (wait_seconds is 5)
    assert not (bed.control_dir / "restore" / CLIENT).exists()
    load_restore_key(agent, keys)
    before = accepted(server, keys["b"])
    opened = restore_hook(bed, "pre-restore")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert "restore master" in opened.stdout
    assert accepted(bed.sshd, keys["b"]) == before + 1  # type: ignore[arg-type]
    assert mux.check(bed.control_dir / "restore" / CLIENT, 1.0).alive


def test_a_restore_rides_the_restore_master_and_post_restore_closes_it(
    bed: Bed, server: Sshd, agent: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    assert bed.pre_dump(CLIENT).returncode == 0
    load_restore_key(agent, keys)
    assert restore_hook(bed, "pre-restore").returncode == 0
    logins = server.accepted_publickey()
    source = tmp_path / "restored.txt"
    source.write_text("back from the pool\n")
    destination = f"/tmp/bpa-restore-{time.monotonic_ns()}.txt"
    try:
        pushed = push(bed, source, destination)
        assert pushed.returncode == 0, pushed.stderr
        assert Path(destination).read_text() == "back from the pool\n"
    finally:
        Path(destination).unlink(missing_ok=True)
    assert bed.sshd.accepted_publickey() == logins  # type: ignore[union-attr]
    restore_socket = bed.control_dir / "restore" / CLIENT
    closed = restore_hook(bed, "post-restore", "--xfer-ok", "1")
    assert closed.returncode == 0
    assert "restore master of" in closed.stdout
    assert not mux.check(restore_socket, 1.0).alive
    assert mux.check(bed.socket(CLIENT), 1.0).alive  # the backup master stays


def test_with_only_the_restore_key_loaded_backups_wait(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    inst = make_setup(tmp_path / "inst", agent={"restore_key": keys["b"]})
    with running(inst):
        ssh_add(inst.socket, str(keys["b"]), askpass=keys["askpass"])
        wait_for(lambda: "only the restore key" in str((inst.state() or {}).get("reason")))
        assert inst.published("waiting")
        ssh_add(inst.socket, str(keys["a"]), askpass=keys["askpass"])
        wait_for(lambda: inst.published("ready"))


def doctor_lines(bed: Bed, tmp_path: Path) -> list[str]:
    conf = tmp_path / "backuppc"
    conf.mkdir(exist_ok=True)
    (conf / "hosts").write_text("host dhcp user\n")
    report = bed.run("doctor", "--backuppc-dir", str(conf), timeout=120).stdout
    return [line for line in report.splitlines() if "restore key" in line]


def test_doctor_says_whether_restores_are_armed(
    bed: Bed, agent: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    unarmed = f"not armed (restores fail fast until 'ssh-add -t 1h {keys['b']}')"
    assert doctor_lines(bed, tmp_path) == [f"ok   restore key: {keys['b']}: {unarmed}"]
    load_restore_key(agent, keys)
    armed = "armed (loaded: restores can write to clients until it is removed)"
    assert doctor_lines(bed, tmp_path) == [f"ok   restore key: {keys['b']}: {armed}"]
    status = json.loads(bed.run("status", "--json").stdout)
    assert status["restores"] == "armed"


def test_doctor_fails_when_backups_could_offer_no_loaded_key(
    agent: Path, server: Sshd, keys: dict[str, Path], tmp_path: Path
) -> None:
    # The backup key lives outside ~/.ssh and no setting names it: IdentitiesOnly finds nothing.
    only_restore_key = {"socket": agent, "restore_key": keys["b"]}
    with bed_for(agent, server, agent=only_restore_key, backuppc={"user": "root"}) as bare:
        [line] = [line for line in doctor_lines(bare, tmp_path) if line.startswith("FAIL")]
    assert "the agent holds none of them: every backup fails" in line
    assert "fix: name the backup key in [mux] identity_files or [agent] keys" in line
