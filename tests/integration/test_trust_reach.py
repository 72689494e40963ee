"""``trust`` says why it got no host key: sshd's penalty, nothing listening, or no answer.

The penalty tests run a real sshd >= 9.8 on 127.0.0.51 with a low PerSourcePenalties
threshold, scan it until it really drops 127.0.0.1 (its log says so), then run the
CLI, or open a master as the pre hook does. An older sshd has no penalties: those
tests skip. 127.0.0.52 carries plain
sockets in the other states (nothing listening, a full accept queue, a silent one).
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent import config as config_mod
from backuppc_agent import exitcodes
from backuppc_agent.doctor.checks_agent import parse_ssh_version
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import trust
from backuppc_agent.ssh import master
from backuppc_agent.ssh.masterfiles import MasterError
from tests.helpers import cli, make_setup, private_dir
from tests.sshd import CLIENT_USER, SSHD, Sshd, ensure_client_user, needs_root

PENALISING = "127.0.0.51"
SOCKETS = "127.0.0.52"
PENALTIES_SINCE = (9, 8)
#: Each scan without login costs 5 s of penalty; past 10 s the source is refused (for up to 60).
LOW_PENALTIES = "PerSourcePenalties noauth:5 min:10 max:60\n"
DROP_LOG = "penalty: connections without attempting authentication"
MAX_SCANS = 10


def sshd_version() -> tuple[int, int]:
    done = subprocess.run([SSHD, "-V"], capture_output=True, text=True, timeout=30, check=False)
    version = parse_ssh_version(done.stderr + done.stdout)
    assert version is not None, done.stderr
    return version


class PenalisingSshd(Sshd):
    """An sshd that penalises loopback too: only the exemptions in extra_config are kept."""

    def _write_config(self) -> None:
        super()._write_config()
        ours = self.extra_config.splitlines(keepends=True)
        lines = self.config.read_text().splitlines(keepends=True)
        kept = [
            line
            for line in lines
            if not line.startswith("PerSourcePenaltyExemptList") or line in ours
        ]
        self.config.write_text("".join(kept))


@pytest.fixture
def penalising() -> Iterator[Sshd]:
    version = sshd_version()
    if version < PENALTIES_SINCE:
        pytest.skip(f"sshd {version[0]}.{version[1]} has no PerSourcePenalties (OpenSSH >= 9.8)")
    ensure_client_user()
    server = PenalisingSshd(PENALISING, extra_config=LOW_PENALTIES)
    try:
        yield server.start()
    finally:
        server.stop()
        server.remove()


def scan_until_dropped(server: Sshd) -> int:
    """Run ssh-keyscan until sshd drops us; return how many scans got a key first."""
    for count in range(MAX_SCANS):
        done = subprocess.run(
            trust.make_keyscan_command(server.address, 22),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if "ssh-ed25519" not in done.stdout:
            return count
    raise AssertionError(f"sshd never dropped us after {MAX_SCANS} scans: {server.logtext()}")


def config_file(tmp_path: Path) -> Path:
    known_hosts = private_dir(tmp_path / "ssh") / "known_hosts"
    return make_setup(
        tmp_path / "inst", mux={"known_hosts": known_hosts}, backuppc={"user": "root"}
    ).config


@needs_root
def test_a_penalised_server_is_named_with_the_exemption_to_add(
    penalising: Sshd, tmp_path: Path
) -> None:
    assert scan_until_dropped(penalising) >= 1
    result = cli("trust", "client1", "--host", PENALISING, "--yes", config=config_file(tmp_path))
    assert DROP_LOG in penalising.logtext()
    assert result.returncode == exitcodes.FAILED
    assert result.stderr.count("\n") == 1, result.stderr
    assert "closed it before its greeting" in result.stderr
    assert "PerSourcePenalties" in result.stderr
    assert "is sshd running" not in result.stderr
    assert "Traceback" not in result.stderr
    match = re.search(r"'PerSourcePenaltyExemptList (\S+)'", result.stderr)
    assert match, result.stderr
    assert f"from [{match.group(1)}]:" in penalising.logtext()  # the address sshd drops


@needs_root
def test_the_exemption_trust_names_stops_the_penalty(penalising: Sshd, tmp_path: Path) -> None:
    scan_until_dropped(penalising)
    with pytest.raises(BackupPCAgentError) as refused:
        trust.scan(PENALISING, 22)
    exempt = re.search(r"'(PerSourcePenaltyExemptList \S+)'", str(refused.value))
    assert exempt, str(refused.value)
    penalising.stop()
    penalising.extra_config = LOW_PENALTIES + exempt.group(1) + "\n"
    penalising.start()
    for _ in range(MAX_SCANS):
        assert trust.scan(PENALISING, 22).key_type == "ssh-ed25519"


@needs_root
def test_a_master_the_penalty_refuses_says_why_in_the_hook_error(
    penalising: Sshd, tmp_path: Path
) -> None:
    scan_until_dropped(penalising)
    config = config_mod.load(str(config_file(tmp_path)))
    with pytest.raises(MasterError) as failed:
        master.open_master(config, "client1", f"{CLIENT_USER}@{PENALISING}")
    text = str(failed.value)
    assert f"cannot open ssh master to {CLIENT_USER}@{PENALISING} for client1: Connection" in text
    assert "PerSourcePenalties" in text
    assert f"on {PENALISING}, add 'PerSourcePenaltyExemptList " in text
    assert DROP_LOG in penalising.logtext()


# -- plain sockets: refused, timed out, silent -----------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((SOCKETS, 0))
        return int(sock.getsockname()[1])


def scan_error(port: int) -> str:
    with pytest.raises(BackupPCAgentError) as failed:
        trust.scan(SOCKETS, port, timeout=1)
    return str(failed.value)


def test_nothing_listening_asks_whether_sshd_runs() -> None:
    port = free_port()
    text = scan_error(port)
    assert f"no ed25519 host key from {SOCKETS} port {port}: nothing listens" in text
    assert "is sshd running there" in text
    assert "PerSourcePenalties" not in text


def test_a_full_accept_queue_is_a_timeout() -> None:
    with socket.socket() as full:
        full.bind((SOCKETS, 0))
        full.listen(0)
        port = full.getsockname()[1]
        with socket.create_connection((SOCKETS, port), timeout=5):
            text = scan_error(port)
    assert "within 1 s (connection timed out)" in text
    assert "PerSourcePenalties" not in text


def test_a_listener_that_never_greets_is_named_silent() -> None:
    with socket.socket() as quiet:
        quiet.bind((SOCKETS, 0))
        quiet.listen(8)
        text = scan_error(quiet.getsockname()[1])
    assert "accepted the connection but sent no SSH greeting" in text
    assert "PerSourcePenalties" not in text
