"""The client gate behind a real sshd: the backup key reads, and can do nothing else.

authorized_keys holds the entry client-setup writes,
``restrict,command="GATE MODE AUTHKEYS" KEY``; the key sits in a real ssh-agent
and a real ssh/rsync/sftp/scp use it as root would on the BackupPC server. The
sshd allows forwarding, agent forwarding and ptys for the client user (a Match
block): each one is shown to work with a plain entry, so that its refusal with
the gate's entry is ``restrict``'s doing. Servers: 127.0.0.81 (backup mode) and
127.0.0.82 (restore mode).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backuppc_agent.ssh.remote import client_tag
from tests.beds import Bed, bed_for
from tests.gate import environ_of, gate_copy
from tests.helpers import CLI, wait_for
from tests.sshd import (
    CLIENT_USER,
    Sshd,
    kill_user_processes,
    needs_root,
    public_key_line,
    running_sshd,
    user_processes,
)

pytestmark = needs_root

BACKUP_ADDRESS = "127.0.0.81"
RESTORE_ADDRESS = "127.0.0.82"
CLIENT = "gateclient"
#: Forwarding and ptys on for the client user, so that only ``restrict`` stops them.
PERMISSIVE = (
    f"Match User {CLIENT_USER}\n"
    "    AllowTcpForwarding yes\n    AllowAgentForwarding yes\n    PermitTTY yes\n"
)
REFUSED = "backuppc-agent-gate: refused: "
RSYNC_SERVER = ("rsync", "--server", "--sender", "-logDtpre.iLsfxC", ".")


@dataclass
class Client:
    """One client machine: its sshd, the gate's entry, a readable tree and a writable drop."""

    sshd: Sshd
    root: Path
    gate: Path
    key: Path
    agent: Path
    mode: str

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def drop(self) -> Path:
        """A directory the client user may write: hostile writes aim here."""
        return self.root / "drop"

    def entry(self) -> str:
        authkeys = self.sshd.authorized_keys
        return (
            f'restrict,command="{self.gate} {self.mode} {authkeys}" {public_key_line(self.key)}\n'
        )

    def gate_entry(self) -> None:
        self.sshd.authorized_keys.write_text(self.entry())

    def plain_entry(self) -> None:
        self.sshd.authorized_keys.write_text(public_key_line(self.key) + "\n")

    def ssh_options(self) -> list[str]:
        known = self.root / "known_hosts"
        return [
            "-F", "/dev/null", "-o", f"IdentityAgent={self.agent}",
            "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", "ControlMaster=no",
            "-o", "ControlPath=none", "-o", "ConnectTimeout=10", "-l", CLIENT_USER,
        ]  # fmt: skip

    def ssh(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", *self.ssh_options(), *args], capture_output=True, text=True,
            timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def rsh(self) -> str:
        """The ssh command for rsync -e (no word holds a blank)."""
        return " ".join(["ssh", *self.ssh_options()])

    def written(self) -> list[str]:
        """Everything under the drop directory (the client user's home is shared with
        other tests running at the same time, so hostile writes aim at the drop)."""
        return sorted(str(p) for p in self.drop.rglob("*"))


def _client(root: Path, sshd: Sshd, key: Path, agent: Path, mode: str) -> Client:
    root.chmod(0o755)
    gate_dir = root / "gate"
    gate = gate_copy(gate_dir)
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.txt").write_text("beta\n")
    subprocess.run(["chmod", "-R", "a+rX", str(data)], check=True)
    drop = root / "drop"
    drop.mkdir()
    shutil.chown(drop, CLIENT_USER, CLIENT_USER)
    (root / "known_hosts").write_text(sshd.known_hosts_line())
    client = Client(sshd, root, gate, key, agent, mode)
    client.gate_entry()
    return client


@pytest.fixture(scope="module")
def backup_client(keys: dict[str, Path], agent: Path) -> Iterator[Client]:
    root = Path(tempfile.mkdtemp(prefix="bpa-gate-"))
    try:
        with running_sshd(BACKUP_ADDRESS, keys["a"], extra_config=PERMISSIVE) as sshd:
            yield _client(root, sshd, keys["a"], agent, "backup")
    finally:
        kill_user_processes(CLIENT_USER, "rsync")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def client(backup_client: Client) -> Iterator[Client]:
    """The backup-mode client, its gate entry in place and its drop directory empty."""
    backup_client.gate_entry()
    for entry in backup_client.drop.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    before = backup_client.written()
    yield backup_client
    backup_client.gate_entry()
    assert backup_client.written() == before


def _refused(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode != 0, done
    assert REFUSED in done.stderr, done.stderr


@pytest.mark.parametrize(
    "command",
    [["id"], ["sh", "-c", "'touch DROP/x'"], ["touch DROP/x"], ["cat", "/etc/passwd"],
     ["rsync", "--server", "-logDtpre.iLsfxC", ".", "DROP/"],
     ["echo", "x", ">", "DROP/x"], ["true;", "touch", "DROP/x"]],
)  # fmt: skip
def test_a_shell_command_or_a_receiving_rsync_is_refused_and_writes_nothing(
    client: Client, command: list[str]
) -> None:
    words = [word.replace("DROP", str(client.drop)) for word in command]
    done = client.ssh(BACKUP_ADDRESS, *words)
    _refused(done)
    assert done.returncode == 1
    assert done.stdout == ""


def test_an_interactive_login_is_refused(client: Client) -> None:
    _refused(client.ssh(BACKUP_ADDRESS))


def test_the_probe_answers_with_the_gate_version_and_mode(client: Client) -> None:
    done = client.ssh(BACKUP_ADDRESS, "echo", "backuppc-agent-gate-probe")
    assert (done.returncode, done.stdout) == (0, "backuppc-agent-gate 1 backup\n"), done.stderr
    assert client.ssh(BACKUP_ADDRESS, "true").returncode == 0


def test_an_rsync_pull_of_a_directory_works(client: Client, tmp_path: Path) -> None:
    target = tmp_path / "pulled"
    done = subprocess.run(
        ["rsync", "-a", "-e", client.rsh(), f"{BACKUP_ADDRESS}:{client.data}/", f"{target}/"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (target / "a.txt").read_text() == "alpha\n"
    assert (target / "sub" / "b.txt").read_text() == "beta\n"


def test_an_rsync_pull_with_protect_args_is_refused(client: Client, tmp_path: Path) -> None:
    done = subprocess.run(
        ["rsync", "-a", "-s", "-e", client.rsh(), f"{BACKUP_ADDRESS}:{client.data}/",
         f"{tmp_path}/"], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    _refused(done)
    assert "--protect-args" in done.stderr


def test_an_rsync_pull_that_would_remove_the_source_is_refused(
    client: Client, tmp_path: Path
) -> None:
    victim = client.drop / "victim.txt"
    victim.write_text("keep me\n")
    shutil.chown(victim, CLIENT_USER, CLIENT_USER)
    done = subprocess.run(
        ["rsync", "--remove-source-files", "-e", client.rsh(), f"{BACKUP_ADDRESS}:{victim}",
         f"{tmp_path}/"], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    _refused(done)
    assert victim.read_text() == "keep me\n"
    victim.unlink()


def test_an_rsync_push_is_refused_and_writes_nothing(client: Client, tmp_path: Path) -> None:
    source = tmp_path / "pushed.txt"
    source.write_text("pushed\n")
    done = subprocess.run(
        ["rsync", "-e", client.rsh(), str(source), f"{BACKUP_ADDRESS}:{client.drop}/"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    _refused(done)
    assert "receiving mode" in done.stderr


@pytest.mark.parametrize("legacy", [False, True])
def test_scp_is_refused_both_over_sftp_and_the_legacy_protocol(
    client: Client, tmp_path: Path, legacy: bool
) -> None:
    source = tmp_path / "copied.txt"
    source.write_text("copied\n")
    argv = ["scp", *(["-O"] if legacy else []), *client.ssh_options()]
    argv = [word for word in argv if word != "-l" and word != CLIENT_USER]
    done = subprocess.run(
        [*argv, str(source), f"{CLIENT_USER}@{BACKUP_ADDRESS}:{client.drop}/"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode != 0
    assert not (client.drop / "copied.txt").exists()


def test_sftp_is_refused(client: Client, tmp_path: Path) -> None:
    source = tmp_path / "put.txt"
    source.write_text("put\n")
    argv = [w for w in client.ssh_options() if w not in ("-l", CLIENT_USER)]
    done = subprocess.run(
        ["sftp", "-b", "-", *argv, f"{CLIENT_USER}@{BACKUP_ADDRESS}"],
        input=f"put {source} {client.drop}/put.txt\n", capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert not (client.drop / "put.txt").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _local_forward_reaches_sshd(client: Client) -> bool:
    """ssh -W (what -L does per connection): the banner of the client's own sshd?"""
    done = client.ssh("-W", f"{BACKUP_ADDRESS}:22", BACKUP_ADDRESS, timeout=15)
    return done.stdout.startswith("SSH-2.0-")


def _remote_forward_accepted(client: Client) -> bool:
    port = _free_port()
    done = client.ssh(
        "-o", "ExitOnForwardFailure=yes", "-R", f"127.0.0.1:{port}:127.0.0.1:9",
        BACKUP_ADDRESS, "true", timeout=15,
    )  # fmt: skip
    return done.returncode == 0 and "forwarding failed" not in done.stderr


def test_port_forwarding_works_with_a_plain_entry_and_restrict_refuses_it(
    client: Client,
) -> None:
    client.plain_entry()
    assert _local_forward_reaches_sshd(client)
    assert _remote_forward_accepted(client)
    client.gate_entry()
    assert not _local_forward_reaches_sshd(client)
    assert not _remote_forward_accepted(client)


def _held_session_environ(client: Client, *ssh_args: str) -> dict[str, str]:
    """Environment of an rsync server that a session keeps waiting on its stdin."""
    argv = [
        "ssh",
        *client.ssh_options(),
        *ssh_args,
        BACKUP_ADDRESS,
        *RSYNC_SERVER,
        str(client.data),
    ]
    session = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        pid = wait_for(_rsync_server_pid, timeout=15)
        return environ_of(pid)
    finally:
        session.kill()
        session.communicate(timeout=15)
        kill_user_processes(CLIENT_USER, "rsync")


def _rsync_server_pid() -> int | None:
    for pid, cmdline in user_processes(CLIENT_USER):
        if cmdline.startswith("rsync --server"):
            return pid
    return None


def test_agent_forwarding_and_a_pty_work_with_a_plain_entry_and_restrict_refuses_them(
    client: Client,
) -> None:
    client.plain_entry()
    # rsync's server as the plain entry runs it: through the user's shell
    plain = _held_session_environ(client, "-A", "-tt")
    assert "SSH_AUTH_SOCK" in plain
    assert "SSH_TTY" in plain
    client.gate_entry()
    gated = _held_session_environ(client, "-A", "-tt")
    assert "SSH_AUTH_SOCK" not in gated
    assert "SSH_TTY" not in gated


# ---- through the agent's own masters: the job marker, the kill session


@pytest.fixture
def bed(agent: Path, client: Client) -> Iterator[Bed]:
    hooks = {"wait_seconds": 5, "connect_timeout_seconds": 5}
    with bed_for(agent, client.sshd, hooks=hooks) as installation:
        try:
            yield installation
        finally:
            kill_user_processes(CLIENT_USER, "rsync")


def test_a_master_opens_through_the_gate_and_its_sessions_are_still_refused(
    bed: Bed, client: Client
) -> None:
    opened = bed.pre_dump(CLIENT)
    assert opened.returncode == 0, opened.stdout + opened.stderr
    probe = bed.session(CLIENT, "echo", "backuppc-agent-gate-probe")
    assert probe.stdout == "backuppc-agent-gate 1 backup\n", probe.stderr
    for command in (["id"], ["sh", "-c", "id"], ["rsync", "--server", "-e.iLsfxC", ".", "/tmp"]):
        done = bed.session(CLIENT, *command)
        assert done.returncode == 1, done
        assert REFUSED in done.stderr


def test_a_marked_rsync_through_the_master_is_ended_by_the_kill_session(
    bed: Bed, client: Client
) -> None:
    assert bed.pre_dump(CLIENT).returncode == 0
    session = subprocess.Popen(
        [CLI, "--config", str(bed.config), "master", "ssh", CLIENT, bed.host,
         *RSYNC_SERVER, str(client.data)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        pid = wait_for(_rsync_server_pid, timeout=15)
        assert environ_of(pid)["BACKUPPC_AGENT_JOB"].startswith(f"{client_tag(CLIENT)}.")
        started = time.monotonic()
        killed = bed.run("master", "kill-remote", "--host", bed.host, CLIENT)
        assert killed.returncode == 0, killed.stdout + killed.stderr
        assert "killed 1 remote process" in killed.stdout
        assert time.monotonic() - started < 5
        assert _rsync_server_pid() is None
    finally:
        session.kill()
        session.communicate(timeout=15)


# ---- restore mode: the receiving rsync, tar extract, undo


@pytest.fixture(scope="module")
def restore_client(keys: dict[str, Path], agent: Path) -> Iterator[Client]:
    root = Path(tempfile.mkdtemp(prefix="bpa-gate-r-"))
    try:
        with running_sshd(RESTORE_ADDRESS, keys["a"]) as sshd:
            # undo renames inside the authorized_keys directory and removes the gate
            shutil.chown(sshd.root, CLIENT_USER, CLIENT_USER)
            client = _client(root, sshd, keys["a"], agent, "restore")
            shutil.chown(client.gate.parent, CLIENT_USER, CLIENT_USER)
            yield client
    finally:
        kill_user_processes(CLIENT_USER, "rsync")
        shutil.rmtree(root, ignore_errors=True)


def test_restore_mode_lets_rsync_push_a_file_into_place(
    restore_client: Client, tmp_path: Path
) -> None:
    source = tmp_path / "restored.txt"
    source.write_text("restored\n")
    done = subprocess.run(
        ["rsync", "-a", "-e", restore_client.rsh(), str(source),
         f"{RESTORE_ADDRESS}:{restore_client.drop}/"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (restore_client.drop / "restored.txt").read_text() == "restored\n"


def test_restore_mode_still_refuses_a_shell(restore_client: Client) -> None:
    done = restore_client.ssh(RESTORE_ADDRESS, "sh", "-c", "id")
    _refused(done)
    probe = restore_client.ssh(RESTORE_ADDRESS, "echo", "backuppc-agent-gate-probe")
    assert probe.stdout == "backuppc-agent-gate 1 restore\n"


def test_undo_puts_the_saved_authorized_keys_back_and_removes_the_gate(
    restore_client: Client,
) -> None:
    authkeys = restore_client.sshd.authorized_keys
    saved = Path(f"{authkeys}.backuppc-agent-saved")
    saved.write_text(public_key_line(restore_client.key) + "\n")
    saved.chmod(0o600)
    shutil.chown(saved, CLIENT_USER, CLIENT_USER)
    done = restore_client.ssh(RESTORE_ADDRESS, "backuppc-agent-gate", "undo")
    assert (done.returncode, done.stdout) == (0, f"restored {authkeys}\n"), done.stderr
    assert authkeys.read_text() == public_key_line(restore_client.key) + "\n"
    assert authkeys.stat().st_mode & 0o777 == 0o644  # the file's mode, not the copy's 0600
    assert not saved.exists()
    assert not restore_client.gate.exists()
    # the key is unrestricted again: the client's shell answers
    again = restore_client.ssh(RESTORE_ADDRESS, "echo", "backuppc-agent-gate-probe")
    assert again.stdout == "backuppc-agent-gate-probe\n"
