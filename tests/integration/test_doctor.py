"""``backuppc-agent doctor`` end to end: a real supervisor, fixture /etc/backuppc and /proc.

Everything is made to pass first, then broken one thing at a time; each break
must show up as a FAIL line with a fix and exit 1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backuppc_agent.doctor.checks_backuppc import REQUIRED_SETTINGS
from tests.helpers import CLI, Setup, cli, make_setup, private_dir, running, ssh_add, wait_for

ALIAS = "127.0.0.43"
HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


class Fixture:
    """A config for user root, a BackupPC config dir and a procfs tree."""

    def __init__(self, tmp_path: Path) -> None:
        self.known_hosts = private_dir(tmp_path / "kh") / "known_hosts"
        self.setup: Setup = make_setup(
            tmp_path / "inst",
            mux={"known_hosts": self.known_hosts},
            backuppc={"user": "root"},
        )
        self.backuppc = private_dir(tmp_path / "etc-backuppc")
        self.procfs = private_dir(tmp_path / "proc")
        self.sysfs = private_dir(tmp_path / "sys")
        (self.procfs / "swaps").write_text(HEADER)
        lines = cli("backuppc-config", "--program", CLI, config=self.setup.config)
        assert lines.returncode == 0, lines.stderr
        (self.backuppc / "config.pl").write_text("$Conf{XferMethod} = 'rsync';\n" + lines.stdout)
        (self.backuppc / "hosts").write_text("host dhcp user\nclient1 0 backuppc\n")
        (self.backuppc / "client1.pl").write_text(f"$Conf{{ClientNameAlias}} = '{ALIAS}';\n")
        self.trust_alias(tmp_path)

    def trust_alias(self, tmp_path: Path) -> None:
        host_key = tmp_path / "hostkey"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
            check=True,
            timeout=30,
        )
        blob = Path(f"{host_key}.pub").read_text().split()[1]
        self.known_hosts.write_text(f"{ALIAS} ssh-ed25519 {blob}\n")

    def doctor(self) -> subprocess.CompletedProcess[str]:
        return cli(
            "doctor",
            "--backuppc-dir",
            str(self.backuppc),
            "--procfs",
            str(self.procfs),
            "--sysfs",
            str(self.sysfs),
            config=self.setup.config,
            timeout=60,
        )


@pytest.fixture
def fixture(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path)


def fail_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("FAIL")]


def healthy(fixture: Fixture, keys: dict[str, Path]) -> None:
    assert ssh_add(fixture.setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
    wait_for(lambda: fixture.setup.published("ready"), timeout=5)
    result = fixture.doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    assert fail_lines(result) == []


def test_everything_passes_once_keys_are_loaded(fixture: Fixture, keys: dict[str, Path]) -> None:
    with running(fixture.setup):
        waiting = fixture.doctor()
        assert waiting.returncode == 1
        [line] = fail_lines(waiting)
        assert line.startswith("FAIL agent: waiting")
        assert "; fix: su - root, then ssh-add" in line
        healthy(fixture, keys)
        result = fixture.doctor()
    for check in (
        "agent",
        "socket",
        "state dir",
        "openssh",
        "control path",
        "backuppc config",
        "known_hosts",
        "swap",
    ):
        assert f"ok   {check}" in result.stdout, check
    assert "supervisor running" in result.stdout


def test_a_key_that_lists_but_cannot_sign_fails_with_the_reason(
    fixture: Fixture, keys: dict[str, Path]
) -> None:
    with running(fixture.setup):
        confirm = ssh_add(fixture.setup.socket, "-c", str(keys["a"]), askpass=keys["askpass"])
        assert confirm.returncode == 0
        result = fixture.doctor()
    assert result.returncode == 1
    [line] = fail_lines(result)
    assert line.startswith("FAIL agent: waiting: key SHA256:")
    assert "confirmation required" in line
    assert "; fix: re-add the key without -c" in line


def test_no_supervisor_is_a_failure_with_the_command_to_start_it(fixture: Fixture) -> None:
    result = fixture.doctor()
    assert result.returncode == 1
    assert "FAIL agent: no agent on" in result.stdout
    assert "supervisorctl start backuppc-agent" in result.stdout


def test_an_unknown_host_key_names_the_trust_command(
    fixture: Fixture, keys: dict[str, Path]
) -> None:
    with running(fixture.setup):
        healthy(fixture, keys)
        fixture.known_hosts.write_text("")
        result = fixture.doctor()
    assert result.returncode == 1
    [line] = fail_lines(result)
    assert f"client1 ({ALIAS}) is not in {fixture.known_hosts}" in line
    assert f"fix: backuppc-agent trust client1 --host {ALIAS}" in line


def test_a_host_file_that_turns_the_status_check_off_fails(
    fixture: Fixture, keys: dict[str, Path]
) -> None:
    with running(fixture.setup):
        healthy(fixture, keys)
        with (fixture.backuppc / "client1.pl").open("a") as handle:
            handle.write("$Conf{UserCmdCheckStatus} = 0;\n$Conf{DumpPreUserCmd} = undef;\n")
        result = fixture.doctor()
    assert result.returncode == 1
    failures = fail_lines(result)
    assert any("client1.pl: $Conf{UserCmdCheckStatus} = 0" in line for line in failures)
    assert any("client1.pl: $Conf{DumpPreUserCmd} = undef" in line for line in failures)


def test_config_pl_without_our_lines_fails(fixture: Fixture, keys: dict[str, Path]) -> None:
    with running(fixture.setup):
        healthy(fixture, keys)
        (fixture.backuppc / "config.pl").write_text("$Conf{XferMethod} = 'rsync';\n")
        result = fixture.doctor()
    assert result.returncode == 1
    failures = fail_lines(result)
    expected = 1 + len(REQUIRED_SETTINGS)
    assert len(failures) == expected
    assert all("fix: backuppc-agent install" in line for line in failures)


def test_unencrypted_swap_fails_and_an_undecidable_swap_file_only_warns(
    fixture: Fixture, keys: dict[str, Path]
) -> None:
    (fixture.sysfs / "class" / "block" / "sda3").mkdir(parents=True)
    (fixture.procfs / "swaps").write_text(HEADER + "/dev/sda3 partition 1000 0 -2\n")
    with running(fixture.setup):
        assert (
            ssh_add(fixture.setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        )
        wait_for(lambda: fixture.setup.published("ready"), timeout=5)
        result = fixture.doctor()
        assert result.returncode == 1
        [line] = fail_lines(result)
        assert "FAIL swap: /dev/sda3 (partition): sda3 is not encrypted" in line
        assert "/etc/crypttab" in line
        (fixture.procfs / "swaps").write_text(HEADER + "/swapfile file 1000 0 -2\n")
        undecided = fixture.doctor()
    assert undecided.returncode == 0
    assert "warn swap: /swapfile (file): cannot tell" in undecided.stdout


def test_a_state_dir_others_can_read_fails_with_the_chmod_to_run(
    fixture: Fixture, keys: dict[str, Path]
) -> None:
    with running(fixture.setup):
        healthy(fixture, keys)
        fixture.setup.state_dir.chmod(0o755)
        result = fixture.doctor()
    assert result.returncode == 1
    [line] = fail_lines(result)
    assert "mode 0755, want 0700 or tighter" in line
    assert f"chmod 700 {fixture.setup.state_dir}" in line
