"""``WarnWeakCrypto no`` goes into our ssh options only where the installed ssh knows it.

OpenSSH 10.1 added the keyword (and the post-quantum warning it silences); older ssh
refuses it, so what we generate must not carry it there. Each host runs the branch
of its own ssh: Debian 12 (9.2) and 13 (10.0) the "absent" one; an ssh >= 10.1
(trixie-backports) the "present" one and the check against a real sshd that offers
no post-quantum key exchange (127.0.0.53).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backuppc_agent import config as config_mod
from backuppc_agent.config import Config
from backuppc_agent.doctor.checks_agent import parse_ssh_version
from backuppc_agent.ssh import master, sshconfig
from tests.sshd import needs_root, running_sshd

SINCE = (10, 1)
WARNING = "not using a post-quantum key exchange algorithm"
CLASSIC_KEX_ONLY = "KexAlgorithms curve25519-sha256\n"
ADDRESS = "127.0.0.53"


def ssh_version() -> tuple[int, int]:
    done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=30, check=False)
    version = parse_ssh_version(done.stderr)
    assert version is not None, done.stderr
    return version


def make_config(ssh: str = "ssh") -> Config:
    mux = {"ssh": ssh}
    return config_mod.from_mapping(
        {"agent": {"socket": "/home/bk/.ssh/agent.socket"}, "mux": mux}, "t.toml", Path("/home/bk")
    )


def test_the_option_check_asks_ssh_itself_without_any_config_file() -> None:
    argv = sshconfig.make_option_check_command("ssh", "WarnWeakCrypto", "no")
    assert argv == ("ssh", "-F", "none", "-G", "-o", "WarnWeakCrypto=no", "--", "localhost")


def test_an_ssh_that_cannot_run_gets_no_option_it_might_refuse() -> None:
    assert not sshconfig.accepts_option("/nonexistent/ssh", "WarnWeakCrypto", "no")
    pairs = sshconfig.options(make_config("/nonexistent/ssh"), "/tmp/c")
    assert "WarnWeakCrypto" not in dict(pairs)


def test_the_options_carry_warn_weak_crypto_exactly_when_this_ssh_knows_it() -> None:
    config = make_config()
    knows = ssh_version() >= SINCE
    assert sshconfig.accepts_option("ssh", "WarnWeakCrypto", "no") is knows
    argv = master.make_master_command(config, "client1", "client1", Path("/tmp/client1.log"))
    assert ("WarnWeakCrypto=no" in argv) is knows
    assert ("    WarnWeakCrypto no\n" in sshconfig.render(config)) is knows


def test_this_ssh_accepts_every_option_we_generate(tmp_path: Path) -> None:
    conf = tmp_path / "ssh_config"
    conf.write_text(sshconfig.render(make_config()))
    done = subprocess.run(
        ["ssh", "-G", "-F", str(conf), "client1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def batch_ssh(*options: str) -> str:
    """stderr of a login attempt to the classic-kex server (refused: no key; the kex happens)."""
    argv = ["ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", *options,
            f"nobody@{ADDRESS}", "true"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stderr


@needs_root
def test_our_options_silence_the_post_quantum_warning_of_ssh_10_1() -> None:
    version = ssh_version()
    if version < SINCE:
        pytest.skip(f"ssh {version[0]}.{version[1]} has no post-quantum warning (OpenSSH >= 10.1)")
    quiet = sshconfig.option_args((sshconfig.QUIET_WEAK_CRYPTO,))
    with running_sshd(ADDRESS, extra_config=CLASSIC_KEX_ONLY):
        assert WARNING in batch_ssh()
        silenced = batch_ssh(*quiet)
    assert WARNING not in silenced
    assert "Permission denied" in silenced  # the connection got as far as the warning would
