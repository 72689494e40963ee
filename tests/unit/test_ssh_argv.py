"""ssh_config rendering, control-path limits and every argv builder, as pure functions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from backuppc_agent import config as config_mod
from backuppc_agent.config import Config
from backuppc_agent.errors import BadNameError, ConfigError, UsageError
from backuppc_agent.ssh import limits, master, remote, sshconfig, wrap
from backuppc_agent.ssh.kill_script import KILL_SCRIPT

HOME = Path("/home/bk")


def make_config(**mux: object) -> Config:
    return config_mod.from_mapping(
        {"agent": {"socket": "/home/bk/.ssh/agent.socket"}, "mux": dict(mux)}, "t.toml", HOME
    )


def test_the_rendered_ssh_config_has_every_option_the_sessions_need() -> None:
    text = sshconfig.render(make_config())
    assert "\nHost *\n" in text
    for line in (
        "IdentityAgent /home/bk/.ssh/agent.socket",
        "BatchMode yes",
        "ControlMaster auto",
        "ControlPath /home/bk/.ssh/mux/%n",
        "ControlPersist 600",
        "ServerAliveInterval 30",
        "UserKnownHostsFile /home/bk/.ssh/known_hosts",
    ):
        assert f"    {line}\n" in text
    assert "IdentitiesOnly" not in text


def test_identity_files_turn_on_identities_only() -> None:
    text = sshconfig.render(make_config(identity_files=["~/.ssh/id_backup.pub"]))
    assert "    IdentitiesOnly yes\n" in text
    assert "    IdentityFile /home/bk/.ssh/id_backup.pub\n" in text


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs ssh")
def test_ssh_itself_accepts_the_rendered_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.write_text(sshconfig.render(make_config()))
    done = subprocess.run(
        ["ssh", "-G", "-F", str(conf), "client1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "controlpath /home/bk/.ssh/mux/client1" in done.stdout
    assert "batchmode yes" in done.stdout


def test_a_control_dir_that_leaves_too_little_room_is_refused_at_load() -> None:
    long_dir = "/var/lib/backuppc/" + "x" * 50
    with pytest.raises(ConfigError) as info:
        make_config(control_dir=long_dir)
    assert any(p.startswith("mux.control_dir:") and "at most" in p for p in info.value.problems)
    with pytest.raises(ConfigError):
        make_config(control_dir="/var/lib/backuppc/%h")


def test_client_names_are_bounded_by_the_socket_path_budget() -> None:
    control = Path("/var/lib/backuppc/.ssh/mux")
    budget = limits.client_budget(control)
    assert len(str(control)) + 1 + budget == limits.CONTROL_PATH_MAX_CHARS
    assert sshconfig.control_path(control, "a" * budget) == control / ("a" * budget)
    with pytest.raises(BadNameError, match="leaves"):
        sshconfig.control_path(control, "a" * (budget + 1))
    with pytest.raises(BadNameError):
        sshconfig.control_path(control, "../x")


def test_the_master_command_never_combines_dash_m_with_controlmaster_yes() -> None:
    cfg = make_config()
    argv = master.make_master_command(cfg, "web1", "root@10.0.0.5", Path("/s/m.log"))
    assert argv[0] == "ssh"
    assert "-M" not in argv
    assert "ControlMaster=yes" in argv
    assert "ControlPath=/home/bk/.ssh/mux/web1" in argv
    assert argv[-6:] == ("-E", "/s/m.log", "-N", "-f", "--", "root@10.0.0.5")


def test_builders_refuse_hostile_hosts_before_building_anything() -> None:
    cfg = make_config()
    with pytest.raises(BadNameError):
        master.make_master_command(cfg, "web1", "-oProxyCommand=x", Path("/l"))
    with pytest.raises(BadNameError):
        remote.make_kill_command(cfg, "web1", "a b", "client", "abc")


def test_the_kill_command_feeds_a_script_to_sh_through_the_master_only() -> None:
    argv = remote.make_kill_command(make_config(), "web1", "root@h", "job", "ab.cd")
    assert "ControlMaster=no" in argv
    assert argv[-7:] == ("--", "root@h", "sh", "-s", "--", "job", "ab.cd")


def test_job_tokens_are_hex_tagged_by_client() -> None:
    token = remote.new_token("web1")
    tag, dot, rand = token.partition(".")
    assert dot
    assert tag == remote.client_tag("web1") != remote.client_tag("web2")
    assert all(c in "0123456789abcdef" for c in tag + rand)
    assert remote.mark_command(token, ["rsync", "--server"]) == (
        "env",
        f"BACKUPPC_AGENT_JOB={token}",
        "rsync",
        "--server",
    )


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_the_kill_script_passes_shellcheck(tmp_path: Path) -> None:
    script = tmp_path / "kill.sh"
    script.write_text(KILL_SCRIPT)
    done = subprocess.run(
        ["shellcheck", "-s", "sh", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["10.0.0.5", "rsync", "--server", "-e"], ([], "10.0.0.5", ["rsync", "--server", "-e"])),
        (["-l", "root", "h", "true"], (["-l", "root"], "h", ["true"])),
        (["-lroot", "-v", "h"], (["-lroot", "-v"], "h", [])),
        (["-vo", "BatchMode=yes", "h", "x"], (["-vo", "BatchMode=yes"], "h", ["x"])),
        (["--", "-weird", "x"], ([], "-weird", ["x"])),
        (["-v"], (["-v"], None, [])),
    ],
)
def test_ssh_arguments_split_like_ssh_parses_them(
    args: list[str], expected: tuple[list[str], str | None, list[str]]
) -> None:
    assert wrap.split_ssh_args(args) == expected


def test_the_session_command_marks_the_remote_command_with_the_token() -> None:
    argv = wrap.make_session_command(
        make_config(), "web1", ["-l", "root", "10.0.0.5", "rsync", "--server"], "ab.cd"
    )
    assert "ControlPath=/home/bk/.ssh/mux/web1" in argv
    tail = argv[argv.index("--") :]
    assert tail == ("--", "10.0.0.5", "env", "BACKUPPC_AGENT_JOB=ab.cd", "rsync", "--server")
    assert argv[argv.index("--") - 2 : argv.index("--")] == ("-l", "root")
    with pytest.raises(UsageError):
        wrap.make_session_command(make_config(), "web1", ["-v"], "ab.cd")
    with pytest.raises(BadNameError):
        wrap.make_session_command(make_config(), "web1", ["--", "-oProxyCommand=x"], "ab.cd")
