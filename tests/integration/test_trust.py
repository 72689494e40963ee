"""``backuppc-agent trust`` against a real sshd on loopback (addresses 127.0.0.41-60).

After trust, ssh with BatchMode and our known_hosts gets past host key
verification; before it, it fails with "Host key verification failed".
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from tests.e2e.deploy_support import Tree, make_tree
from tests.helpers import cli, make_setup, private_dir
from tests.sshd import Sshd, needs_root, running_sshd

ADDRESS = "127.0.0.41"
NOBODY_LISTENS = "127.0.0.42"

pytestmark = needs_root


@pytest.fixture(scope="module")
def server() -> Iterator[Sshd]:
    with running_sshd(ADDRESS) as sshd:
        yield sshd


@pytest.fixture
def env(tmp_path: Path) -> tuple[Path, Path]:
    """(config, known_hosts): a config whose [mux] known_hosts lives in the test dir."""
    known_hosts = private_dir(tmp_path / "ssh") / "known_hosts"
    setup = make_setup(
        tmp_path / "inst",
        mux={"known_hosts": known_hosts},
        backuppc={"user": "root"},
    )
    return setup.config, known_hosts


def fingerprint(server: Sshd) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", f"{server.host_key}.pub"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return out.split()[1]


def batch_ssh(known_hosts: Path) -> str:
    """stderr of a BatchMode ssh to the server using only our known_hosts."""
    argv = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityFile=/dev/null",
        f"nobody@{ADDRESS}",
        "true",
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stderr


def test_trust_adds_the_key_so_batch_mode_ssh_passes_host_verification(
    server: Sshd, env: tuple[Path, Path]
) -> None:
    config, known_hosts = env
    assert "Host key verification failed" in batch_ssh(known_hosts)
    result = cli("trust", "client1", "--host", ADDRESS, "--yes", config=config)
    assert result.returncode == 0, result.stderr
    assert f"client1 ({ADDRESS}) ed25519 host key {fingerprint(server)}" in result.stdout
    assert known_hosts.read_text().startswith(f"{ADDRESS} ssh-ed25519 AAAA")
    assert "Host key verification failed" not in batch_ssh(known_hosts)
    assert "Permission denied" in batch_ssh(known_hosts)


def test_a_second_trust_changes_nothing(server: Sshd, env: tuple[Path, Path]) -> None:
    config, known_hosts = env
    assert cli("trust", "client1", "--host", ADDRESS, "--yes", config=config).returncode == 0
    before = known_hosts.read_bytes()
    again = cli("trust", "client1", "--host", ADDRESS, "--yes", config=config)
    assert again.returncode == 0
    assert "already trusted" in again.stdout
    assert known_hosts.read_bytes() == before


def test_a_hashed_entry_counts_as_trusted(server: Sshd, env: tuple[Path, Path]) -> None:
    config, known_hosts = env
    known_hosts.write_text(server.known_hosts_line())
    subprocess.run(
        ["ssh-keygen", "-H", "-f", str(known_hosts)], capture_output=True, timeout=30, check=True
    )
    assert ADDRESS not in known_hosts.read_text()
    result = cli("trust", "client1", "--host", ADDRESS, "--yes", config=config)
    assert result.returncode == 0
    assert "already trusted" in result.stdout


def test_without_yes_and_without_a_terminal_nothing_is_added(
    server: Sshd, env: tuple[Path, Path]
) -> None:
    config, known_hosts = env
    result = cli("trust", "client1", "--host", ADDRESS, config=config)
    assert result.returncode == exitcodes.FAILED
    assert "confirm with --yes" in result.stderr
    assert not known_hosts.exists()


def test_a_different_key_on_file_is_refused(
    server: Sshd, env: tuple[Path, Path], tmp_path: Path
) -> None:
    config, known_hosts = env
    other = tmp_path / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], timeout=30, check=True
    )
    blob = Path(f"{other}.pub").read_text().split()[1]
    known_hosts.write_text(f"{ADDRESS} ssh-ed25519 {blob}\n")
    before = known_hosts.read_bytes()
    result = cli("trust", "client1", "--host", ADDRESS, "--yes", config=config)
    assert result.returncode == exitcodes.FAILED
    assert "DIFFERENT ed25519 key" in result.stderr
    assert f"ssh-keygen -R '{ADDRESS}'" in result.stderr
    assert known_hosts.read_bytes() == before


def test_the_address_comes_from_client_name_alias(
    server: Sshd, env: tuple[Path, Path], tmp_path: Path
) -> None:
    config, known_hosts = env
    backuppc_dir = private_dir(tmp_path / "etc-backuppc")
    (backuppc_dir / "client2.pl").write_text(f"$Conf{{ClientNameAlias}} = '{ADDRESS}';\n")
    result = cli("trust", "client2", "--backuppc-dir", str(backuppc_dir), "--yes", config=config)
    assert result.returncode == 0, result.stderr
    assert f"client2 ({ADDRESS})" in result.stdout
    assert known_hosts.read_text().startswith(f"{ADDRESS} ")


def test_no_server_or_a_hostile_name_is_one_clear_line(env: tuple[Path, Path]) -> None:
    config, known_hosts = env
    result = cli("trust", "client1", "--host", NOBODY_LISTENS, "--yes", config=config)
    assert result.returncode == exitcodes.FAILED
    assert f"no ed25519 host key from {NOBODY_LISTENS} port 22" in result.stderr
    hostile = cli("trust", "-oProxyCommand=x", "--yes", config=config)
    assert hostile.returncode != 0
    dashed = cli("trust", "client1", "--host=-oProxyCommand=x", "--yes", config=config)
    assert dashed.returncode == 7
    assert "Traceback" not in result.stderr + hostile.stderr + dashed.stderr
    assert not known_hosts.exists()


# -- known_hosts that root made, or with a group backuppc is not in -------------------


@pytest.fixture
def tree() -> Iterator[Tree]:
    """A tree of the backuppc account (root's when backuppc cannot run our code)."""
    made = make_tree()
    if made.user != "backuppc":
        made.remove()
        pytest.skip("needs the backuppc account and a Python it can run")
    ssh = made.root / "ssh"
    made.write_config(mux={"known_hosts": ssh / "known_hosts"})
    try:
        yield made
    finally:
        made.remove()


def trust_as(user: str, tree: Tree) -> subprocess.CompletedProcess[str]:
    argv = [str(tree.program), "--config", str(tree.config), "trust", "client1",
            "--host", ADDRESS, "--yes"]  # fmt: skip
    if user != "root":
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def owner(path: Path) -> tuple[str, str]:
    info = path.stat()
    return pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name


BACKUPPC = ("backuppc", "backuppc")


def test_as_root_a_root_owned_known_hosts_goes_to_backuppc_with_the_key(
    server: Sshd, tree: Tree
) -> None:
    known_hosts = tree.root / "ssh" / "known_hosts"
    known_hosts.write_text("192.0.2.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt5\n")  # sudo >>
    done = trust_as("root", tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert owner(known_hosts) == BACKUPPC
    assert known_hosts.read_text().startswith("192.0.2.1 ")
    assert f"{ADDRESS} ssh-ed25519 " in known_hosts.read_text()


def test_as_backuppc_a_known_hosts_with_a_foreign_group_is_rewritten(
    server: Sshd, tree: Tree
) -> None:
    known_hosts = tree.root / "ssh" / "known_hosts"
    known_hosts.write_text("192.0.2.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt5\n")
    os.chown(known_hosts, pwd.getpwnam("backuppc").pw_uid, 0)  # group root: not backuppc's
    done = trust_as("backuppc", tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert owner(known_hosts) == BACKUPPC
    assert f"{ADDRESS} ssh-ed25519 " in known_hosts.read_text()


def test_as_backuppc_a_root_owned_directory_is_one_line_naming_owner_and_fix(
    server: Sshd, tree: Tree
) -> None:
    ssh = tree.root / "ssh"
    os.chown(ssh, 0, 0)
    ssh.chmod(0o755)
    done = trust_as("backuppc", tree)
    assert done.returncode == exitcodes.FAILED
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"{ssh} belongs to root: run trust as root" in done.stderr
    assert f"chown backuppc {ssh}" in done.stderr
