"""Whether the backup key is a root shell on each client: probed through new masters.

Two real sshds on 127.0.0.90-91 accept the same key: one plainly (a login
shell, as on a client nobody set up), one only through the shipped gate
(``restrict,command="GATE backup AUTHKEYS"``, as client-setup writes it). A
pre-dump's new master probes each; the metric and doctor report what it found.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent.backuppc import confdir
from backuppc_agent.metrics.masters import MasterPart
from backuppc_agent.metrics.scrape import ScrapeErrors
from backuppc_agent.ssh import remote
from tests.beds import Bed, bed_for
from tests.helpers import ROOT, cli
from tests.scrape import scrape
from tests.sshd import Sshd, needs_root, public_key_line, running_sshd

pytestmark = needs_root

SHELL_ADDRESS, GATED_ADDRESS = "127.0.0.90", "127.0.0.91"
GATE = ROOT / "backuppc_agent" / "install" / "files" / "client" / "backuppc-agent-gate"


@pytest.fixture(scope="module")
def servers(keys: dict[str, Path]) -> Iterator[tuple[Sshd, Sshd]]:
    with running_sshd(SHELL_ADDRESS, keys["a"]) as shell, running_sshd(GATED_ADDRESS) as gated:
        gate = gated.root / "backuppc-agent-gate"
        shutil.copyfile(GATE, gate)
        gate.chmod(0o755)
        options = f'restrict,command="{gate} backup {gated.authorized_keys}"'
        gated.authorized_keys.write_text(f"{options} {public_key_line(keys['a'])}\n")
        yield shell, gated


@pytest.fixture
def bed(agent: Path, servers: tuple[Sshd, Sshd]) -> Iterator[Bed]:
    hooks = {"wait_seconds": 5, "connect_timeout_seconds": 5}
    with bed_for(agent, servers[0], hooks=hooks) as installation:
        gated_known = servers[1].known_hosts_line()
        with (installation.root / "known_hosts").open("a") as known:
            known.write(gated_known)
        yield installation


def pre_dump(bed: Bed, client: str, address: str) -> None:
    done = bed.hook("pre-dump", "--client", client, "--host", f"bpaclient@{address}")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_new_master_records_whether_the_backup_key_is_restricted(bed: Bed) -> None:
    pre_dump(bed, "openclient", SHELL_ADDRESS)
    pre_dump(bed, "gatedclient", GATED_ADDRESS)
    accesses = remote.remembered_accesses(bed.state_dir)
    assert {name: access for name, (access, _when) in accesses.items()} == {
        "openclient": "shell",
        "gatedclient": "gate",
    }
    scraped = scrape([MasterPart(ScrapeErrors(), bed.control_dir, bed.state_dir)])
    assert scraped.value("client_restricted", host="openclient") == 0
    assert scraped.value("client_restricted", host="gatedclient") == 1
    assert bed.session("gatedclient", "id").returncode != 0  # the gate refuses a shell command


def test_doctor_names_the_client_where_the_backup_key_is_a_root_shell(
    bed: Bed, tmp_path: Path
) -> None:
    pre_dump(bed, "openclient", SHELL_ADDRESS)
    pre_dump(bed, "gatedclient", GATED_ADDRESS)
    conf = tmp_path / "backuppc"
    conf.mkdir()
    (conf / "config.pl").write_text("$Conf{XferMethod} = 'rsync';\n")
    (conf / "hosts").write_text("host dhcp user\nopenclient 0 backuppc\ngatedclient 0 backuppc\n")
    (conf / "openclient.pl").write_text(f"$Conf{{ClientNameAlias}} = '{SHELL_ADDRESS}';\n")
    (conf / "gatedclient.pl").write_text(f"$Conf{{ClientNameAlias}} = '{GATED_ADDRESS}';\n")
    report = cli("doctor", "--backuppc-dir", str(conf), config=bed.config, timeout=120).stdout
    lines = [line for line in report.splitlines() if "client keys" in line]
    assert len(lines) == 1, report
    assert lines[0].startswith("warn client keys: openclient: the backup key gets a login shell")
    assert "fix: backuppc-agent client-setup openclient" in lines[0]


def test_doctor_fails_a_gated_rsync_host_whose_args_still_protect_args(
    bed: Bed, tmp_path: Path
) -> None:
    pre_dump(bed, "gatedclient", GATED_ADDRESS)
    conf = tmp_path / "backuppc"
    conf.mkdir()
    (conf / "config.pl").write_text(
        "$Conf{XferMethod} = 'rsync';\n$Conf{RsyncArgs} = ['--super', '--protect-args'];\n"
    )
    (conf / "hosts").write_text("host dhcp user\ngatedclient 0 backuppc\n")
    alias = f"$Conf{{ClientNameAlias}} = '{GATED_ADDRESS}';\n"
    (conf / "gatedclient.pl").write_text(alias)

    def client_lines() -> list[str]:
        report = cli("doctor", "--backuppc-dir", str(conf), config=bed.config, timeout=120)
        return [line for line in report.stdout.splitlines() if "client keys" in line]

    [line] = client_lines()
    assert line.startswith("FAIL client keys: gatedclient: the gate restricts the backup key")
    assert "RsyncArgs still pass --protect-args" in line
    assert "grep { $_ ne '--protect-args' }" in line
    (conf / "gatedclient.pl").write_text(alias + "\n".join(confdir.WITHOUT_PROTECT_ARGS) + "\n")
    assert client_lines() == [
        "ok   client keys: the backup key reaches only the gate on all 1 ssh hosts"
    ]
