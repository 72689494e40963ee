"""Hooks of jobs whose transfer never runs ssh ($XferMethod rsyncd, smb, ftp): left alone.

No agent runs here at all: a gated hook would wait and fail; these pass at once,
print why and record the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Setup, cli, make_setup, stored_summary


@pytest.fixture
def quick(tmp_path: Path) -> Setup:
    tmp_path.chmod(0o700)
    return make_setup(tmp_path / "inst", hooks={"wait_seconds": 0.2})


@pytest.mark.parametrize("method", ["rsyncd", "smb", "ftp"])
@pytest.mark.parametrize("hook", ["pre-dump", "pre-restore"])
def test_a_pre_hook_of_a_transfer_without_ssh_passes_with_no_agent(
    quick: Setup, hook: str, method: str
) -> None:
    done = cli("hook", hook, "--client", "nas", "--host", "root@nas", "--xfer-method", method,
               config=quick.config)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == (
        f"backuppc-agent: nas: XferMethod {method} does not use ssh: not gated, no ssh master\n"
    )
    summary = stored_summary(quick.state_dir)
    assert summary.runs == {(hook, "ok"): 1}
    assert list(summary.last_success) == ["nas"]


def test_the_same_hook_for_rsync_is_gated_and_fails_without_keys(quick: Setup) -> None:
    done = cli("hook", "pre-dump", "--client", "web", "--host", "root@web",
               "--xfer-method", "rsync", config=quick.config)  # fmt: skip
    assert done.returncode == 5, done.stdout + done.stderr
    assert "ssh-agent is not running" in done.stdout


def test_a_post_hook_without_ssh_touches_no_master_and_exits_0(quick: Setup) -> None:
    done = cli("hook", "post-dump", "--client", "nas", "--host", "root@nas",
               "--xfer-method", "smb", "--xfer-ok", "0", config=quick.config)  # fmt: skip
    assert done.returncode == 0
    assert "XferMethod smb does not use ssh" in done.stdout
    assert stored_summary(quick.state_dir).runs == {("post-dump", "failed"): 1}


@pytest.mark.parametrize(("command", "gated"), [
    ("$tarPath -c -v -f - -C $shareName --totals", False),  # Debian's stock localhost host
    ("$sshPath -q -x -n -l root $host env LC_ALL=C $tarPath -c -v -f - -C $shareName", True),
])  # fmt: skip
def test_tar_is_gated_only_when_backuppcs_tar_command_runs_ssh(
    tmp_path: Path, command: str, gated: bool
) -> None:
    conf_dir = tmp_path / "etc-backuppc"
    conf_dir.mkdir()
    (conf_dir / "config.pl").write_text(f"$Conf{{TarClientCmd}} = '{command}';\n")
    setup = make_setup(tmp_path / "inst", hooks={"wait_seconds": 0.2},
                       backuppc={"conf_dir": str(conf_dir)})  # fmt: skip
    done = cli("hook", "pre-dump", "--client", "localhost", "--host", "root@localhost",
               "--xfer-method", "tar", config=setup.config)  # fmt: skip
    if gated:
        assert done.returncode == 5, done.stdout + done.stderr
        assert "ssh-agent is not running" in done.stdout
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "TarClientCmd that does not run $sshPath does not use ssh" in done.stdout


def test_a_hostile_client_name_is_refused_before_any_file_is_read(quick: Setup) -> None:
    done = cli("hook", "pre-dump", "--client", "../../etc/passwd", "--xfer-method", "tar",
               config=quick.config)  # fmt: skip
    assert done.returncode == 7, done.stdout + done.stderr
