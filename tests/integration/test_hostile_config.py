"""Broken config files through the real CLI: exit 2, every problem on its own line.

The validator itself is covered key by key in tests/unit/test_config.py and
fuzzed in test_config_fuzz.py; here the whole file goes through
``backuppc-agent`` as an operator (or BackupPC, through a hook) would run it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cli

#: one wrong value per line, each a different kind of mistake
BROKEN = """\
bogus_top = 1
[agent]
socket = "relative/agent.socket"
env_file = "/var/lib/backuppc/../../etc/profile.d/x.sh"
poll_seconds = "fast"
lifetime_seconds = true
required_keys = "SHA256:x"
keys = [1, 2]
ssh_agent = "-oProxyCommand=x"
unknown_key = 3
[state]
dir = 42
[metrics]
listen = "127.0.0.1:\u00b2"
certfile = "/etc/cert.pem"
[hooks]
wait_seconds = -1
post_master = "explode"
[mux]
control_dir = "/a/very/long/directory/name/that/leaves/no/room/for/client/names/x"
ssh = "bin/ssh"
identity_files = ["~/../root/.ssh/id"]
[swap]
top_processes = 1e9
[nonsense]
"""
EXPECTED = [
    "bogus_top: unknown section",
    "agent.unknown_key: unknown key",
    "agent.socket: 'relative/agent.socket' must be absolute",
    "agent.env_file: '/var/lib/backuppc/../../etc/profile.d/x.sh' must not contain '..'",
    "agent.poll_seconds: expected a number, got str 'fast'",
    "agent.lifetime_seconds: expected an integer, got bool True",
    "agent.required_keys: expected a list of strings, got str 'SHA256:x'",
    "agent.keys: expected a list of strings",
    "agent.ssh_agent: '-oProxyCommand=x' must be a program name or an absolute path",
    "state.dir: expected a path string, got int 42",
    "metrics.listen: '127.0.0.1:\u00b2' must be HOST:PORT",
    "hooks.wait_seconds: must be between 0 and 3600",
    "hooks.post_master: must be one of 'keep', 'close'",
    "mux.control_dir: '/a/very/long/directory/name/that/leaves/no/room/for/client/names/x'",
    "mux.ssh: 'bin/ssh' must be a program name or an absolute path",
    "mux.identity_files: '",
    "swap.top_processes: expected an integer, got float",
    "nonsense: unknown section",
    "metrics.certfile, metrics.keyfile: set both for TLS, or neither",
]


@pytest.mark.parametrize(
    "command",
    [
        ["config", "check"],
        ["status"],
        ["run"],
        ["hook", "pre-dump", "--client", "web01", "--host", "root@127.0.0.9"],
        ["master", "list"],
    ],
)
def test_every_problem_of_a_broken_file_is_named_on_its_own_line(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BROKEN)
    done = cli(*command, config=path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert all(line.startswith(f"backuppc-agent: {path}: ") for line in lines), lines
    for needle in EXPECTED:
        assert sum(needle in line for line in lines) == 1, (needle, lines)
    assert len(lines) == len(EXPECTED)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"[agent\nsocket = 1\n", "not valid TOML"),
        (b"\xff\xfe\x00garbage", "not valid TOML"),
        (b"[agent]\nsocket = '/x'\nsocket = '/y'\n", "not valid TOML"),
        (b"agent = 5\n", "agent: expected a table, got int"),
        (b"[metrics]\nlisten = '[::1]:99999'\n", "metrics.listen"),
    ],
)
def test_unparsable_or_mistyped_files_are_one_line_each(
    tmp_path: Path, content: bytes, needle: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    done = cli("config", "check", config=path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert needle in done.stderr


def test_a_config_file_that_is_a_directory_or_missing_is_one_line(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "missing.toml"):
        done = cli("config", "check", config=path)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1
        assert f"backuppc-agent: {path}: cannot read: " in done.stderr
