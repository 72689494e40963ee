"""doctor's readers and checks on fixture trees: BackupPC config, /proc/swaps with /sys, ssh -V."""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path
from typing import cast

import pytest

from backuppc_agent.agent import protocol, tang
from backuppc_agent.backuppc import confdir
from backuppc_agent.config import from_mapping
from backuppc_agent.doctor import Env, Finding, Verdict, failed, run_checks, swapcrypt
from backuppc_agent.doctor.checks_agent import (
    check_agent,
    check_restore_key,
    check_unlock,
    parse_ssh_version,
)
from backuppc_agent.install.context import Context
from tests.hostile_support import listener

SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"

# -- BackupPC's config --------------------------------------------------------------


def test_the_last_assignment_wins_and_multi_line_values_are_read() -> None:
    text = (
        "$Conf{XferMethod} = 'tar';\n"
        "#$Conf{XferMethod} = 'smb';\n"
        "$Conf{RsyncShareName} = [\n    '/etc',\n    '/home',\n];\n"
        "$Conf{XferMethod}    =  'rsync';   # comment\n"
    )
    found = confdir.assignments(text)
    assert found["XferMethod"] == "'rsync'"
    assert found["RsyncShareName"] == "[ '/etc', '/home', ]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("'a b'", "a b"), ('"x"', "x"), ("['10.0.0.1', 'h']", "10.0.0.1"), ("undef", None)],
)
def test_first_string(value: str, expected: str | None) -> None:
    assert confdir.first_string(value) == expected


def test_the_hosts_file_header_and_comments_are_skipped_and_names_keyed_lower_case() -> None:
    text = b"#comment\nhost        dhcp    user    moreUsers\nAlpha 0 backuppc\n\nbeta 0 x # c\n"
    assert list(confdir.parse_hosts(text)) == ["alpha", "beta"]
    assert confdir.parse_hosts(text)["alpha"] == {
        "host": "Alpha", "dhcp": "0", "user": "backuppc", "moreUsers": None
    }  # fmt: skip


def test_a_host_file_overrides_the_alias_and_transfer_method(tmp_path: Path) -> None:
    (tmp_path / "config.pl").write_text("$Conf{XferMethod} = 'rsync';\n")
    (tmp_path / "hosts").write_text("host dhcp user\nWeb 0 backuppc\nnas 0 backuppc\n")
    (tmp_path / "pc" / "web").mkdir(parents=True)  # TopDir/pc/HOST/config.pl: BackupPC 3's place
    (tmp_path / "pc" / "web" / "config.pl").write_text("$Conf{ClientNameAlias} = '192.0.2.7';\n")
    (tmp_path / "nas.pl").write_text("$Conf{XferMethod} = 'smb';\n")
    conf = confdir.ConfDir(tmp_path, tmp_path)
    assert conf.host_names() == ["web", "nas"]
    assert conf.host("web") == confdir.Host("web", "192.0.2.7", "rsync")
    assert conf.host("Web") == conf.host("web")  # looked up as BackupPC keys it
    assert conf.host("nas").uses_ssh is False


def test_debians_stock_config_is_read_with_our_block_winning(tmp_path: Path) -> None:
    stock = Path("/etc/backuppc/config.pl")
    if not stock.exists():
        pytest.skip("BackupPC is not installed")
    text = stock.read_text() + "\n$Conf{UserCmdCheckStatus} = 1;\n"
    found = confdir.assignments(text)
    assert found["UserCmdCheckStatus"] == "1"
    assert found["DumpPreUserCmd"] == "undef"
    assert "XferMethod" in found


# -- swap -----------------------------------------------------------------------


class Tree:
    """A fixture /proc and /sys."""

    def __init__(self, root: Path) -> None:
        self.proc = root / "proc"
        self.sys = root / "sys"
        (self.proc / "self").mkdir(parents=True)
        (self.sys / "block").mkdir(parents=True)
        (self.sys / "class" / "block").mkdir(parents=True)
        (self.sys / "dev" / "block").mkdir(parents=True)

    def swaps(self, *lines: str) -> None:
        (self.proc / "swaps").write_text(SWAPS_HEADER + "".join(line + "\n" for line in lines))

    def device(self, name: str, majmin: str, uuid: str = "", slaves: tuple[str, ...] = ()) -> None:
        block = self.sys / "block" / name
        (block / "slaves").mkdir(parents=True)
        if uuid:
            (block / "dm").mkdir()
            (block / "dm" / "uuid").write_text(uuid + "\n")
            (block / "dm" / "name").write_text(name.upper() + "\n")
        for slave in slaves:
            (block / "slaves" / slave).mkdir()
        (self.sys / "class" / "block" / name).mkdir()
        os.symlink(f"../../devices/virtual/block/{name}", self.sys / "dev" / "block" / majmin)

    def mounts(self, *entries: tuple[str, str]) -> None:
        lines = [
            f"{i} 1 {majmin} / {mount} rw - ext4 x rw" for i, (mount, majmin) in enumerate(entries)
        ]
        (self.proc / "self" / "mountinfo").write_text("\n".join(lines) + "\n")

    def check(self) -> list[swapcrypt.Encryption] | None:
        return swapcrypt.check(self.proc, self.sys)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def test_no_swap_is_fine(tree: Tree) -> None:
    tree.swaps()
    assert tree.check() == []


def test_an_unreadable_proc_swaps_is_not_taken_for_no_swap(tree: Tree) -> None:
    assert tree.check() is None


def test_a_plain_partition_is_unencrypted(tree: Tree) -> None:
    tree.device("sda3", "8:3")
    tree.swaps("/dev/sda3                               partition\t1048572\t\t0\t\t-2")
    [verdict] = tree.check() or []
    assert verdict.encrypted is False
    assert "sda3 is not encrypted" in verdict.why


def test_dm_crypt_swap_by_dm_name_or_mapper_path_is_encrypted(tree: Tree) -> None:
    tree.device("dm-1", "254:1", uuid="CRYPT-PLAIN-cryptswap")
    tree.swaps("/dev/dm-1 partition 1000 0 -2", "/dev/mapper/DM-1 partition 1000 0 -3")
    verdicts = tree.check() or []
    assert [v.encrypted for v in verdicts] == [True, True]


def test_lvm_on_luks_is_encrypted_and_plain_lvm_is_not(tree: Tree) -> None:
    tree.device("dm-0", "254:0", uuid="CRYPT-LUKS2-abc-sda5_crypt")
    tree.device("dm-2", "254:2", uuid="LVM-xyz", slaves=("dm-0",))
    tree.device("dm-3", "254:3", uuid="LVM-plain", slaves=("sdb1",))
    tree.device("sdb1", "8:17")
    tree.swaps("/dev/dm-2 partition 1000 0 -2", "/dev/dm-3 partition 1000 0 -3")
    assert [v.encrypted for v in tree.check() or []] == [True, False]


def test_zram_is_ram_unless_it_writes_back_to_a_disk(tree: Tree) -> None:
    tree.device("zram0", "252:0")
    tree.device("zram1", "252:1")
    (tree.sys / "block" / "zram0" / "backing_dev").write_text("none\n")
    (tree.sys / "block" / "zram1" / "backing_dev").write_text("/dev/sdc1\n")
    tree.swaps("/dev/zram0 partition 1000 0 100", "/dev/zram1 partition 1000 0 99")
    assert [v.encrypted for v in tree.check() or []] == [True, False]


def test_a_swap_file_is_judged_by_the_device_of_its_file_system(tree: Tree) -> None:
    tree.device("dm-0", "254:0", uuid="CRYPT-LUKS2-abc-root")
    tree.device("sda1", "8:1")
    tree.mounts(("/", "254:0"), ("/data", "8:1"), ("/data/btrfs", "0:45"))
    tree.swaps(
        "/swapfile file 1000 0 -2",
        "/data/swap\\040file file 1000 0 -3",
        "/data/btrfs/swap file 1000 0 -4",
    )
    verdicts = tree.check() or []
    assert [v.encrypted for v in verdicts] == [True, False, None]
    assert verdicts[1].area.device == "/data/swap file"
    assert "cannot tell" in verdicts[2].why


def test_a_swap_file_deleted_in_use_is_judged_by_its_file_system(tree: Tree) -> None:
    tree.device("sda1", "8:1")
    tree.mounts(("/", "8:1"))
    tree.swaps("/swap\\134file\\040(deleted) file 1000 0 -2")
    [verdict] = tree.check() or []
    assert verdict.area.device == "/swap\\file (deleted)"
    assert verdict.encrypted is False
    assert "swap file on sda1" in verdict.why


def test_a_device_missing_from_sys_cannot_be_judged(tree: Tree) -> None:
    tree.swaps("/dev/nvme0n1p9 partition 1000 0 -2")
    [verdict] = tree.check() or []
    assert verdict.encrypted is None


def test_this_machines_swap_is_judged_without_error() -> None:
    verdicts = swapcrypt.check(Path("/proc"), Path("/sys"))
    assert verdicts is not None
    assert all(v.why for v in verdicts)


# -- OpenSSH version -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.11 19 Sep 2023\n", (9, 2)),
        ("OpenSSH_10.0p2 Debian-5, OpenSSL 3.5.0\n", (10, 0)),
        ("OpenSSH_7.2p2 Ubuntu-4ubuntu2.10\n", (7, 2)),
        ("ssh: not found\n", None),
    ],
)
def test_parse_ssh_version(text: str, version: tuple[int, int] | None) -> None:
    assert parse_ssh_version(text) == version


# -- the report ----------------------------------------------------------------------


def test_a_check_that_crashes_is_a_fail_line_not_a_traceback() -> None:
    def check_broken(env: Env) -> list[Finding]:
        raise RuntimeError("boom")

    def check_fine(env: Env) -> list[Finding]:
        return [Finding("fine", Verdict.OK, "all good", "never shown")]

    findings = run_checks(cast(Env, None), [check_broken, check_fine])
    assert [f.line() for f in findings] == [
        "FAIL broken: could not be checked: boom",
        "ok   fine: all good",
    ]
    assert failed(findings)


def test_warn_and_skip_do_not_fail_but_show_their_fix() -> None:
    findings = [
        Finding("swap", Verdict.WARN, "cannot tell", "check by hand"),
        Finding("keyring", Verdict.SKIP, "not ours"),
    ]
    assert not failed(findings)
    assert findings[0].line() == "warn swap: cannot tell; fix: check by hand"


@pytest.mark.parametrize(
    ("method", "settings", "restore", "expected"),
    [
        ("rsync", {}, False, True),
        ("rsyncd", {}, False, False),
        ("smb", {}, False, False),
        ("ftp", {}, True, False),
        ("tar", {}, False, True),  # config.pl's default TarClientCmd runs $sshPath
        ("tar", {"TarClientCmd": "'/usr/bin/env LC_ALL=C $tarPath -c'"}, False, False),
        ("tar", {"TarClientCmd": "'/usr/bin/env $tarPath'"}, True, True),
        ("tar", {"TarClientRestoreCmd": "'$sshPath -q -x -l root $host'"}, True, True),
        ("something-new", {}, False, True),  # unknown: gated, to be safe
    ],
)
def test_which_transfers_use_ssh(
    method: str, settings: dict[str, str], restore: bool, expected: bool
) -> None:
    assert confdir.uses_ssh(method, settings, restore) is expected


def test_debians_stock_localhost_tar_is_a_host_without_ssh(tmp_path: Path) -> None:
    (tmp_path / "config.pl").write_text(
        "$Conf{XferMethod} = 'rsync';\n"
        "$Conf{TarClientCmd} = '$sshPath -q -x -n -l root $host env LC_ALL=C $tarPath';\n"
    )
    (tmp_path / "hosts").write_text("host dhcp user\nlocalhost 0 backuppc\nweb 0 backuppc\n")
    (tmp_path / "localhost.pl").write_text(
        "$Conf{XferMethod} = 'tar';\n"
        "$Conf{TarClientCmd} = '/usr/bin/env LC_ALL=C $tarPath -c -v -f - -C $shareName'\n"
        "                        . ' --totals';\n"
    )
    (tmp_path / "web.pl").write_text("$Conf{XferMethod} = 'tar';\n")
    conf = confdir.ConfDir(tmp_path, tmp_path)
    assert conf.host("localhost").uses_ssh is False
    assert conf.host("web").uses_ssh is True
    assert confdir.uses_ssh("tar", conf.settings("localhost")) is False
    assert confdir.uses_ssh("tar", conf.settings("web")) is True
    assert confdir.uses_ssh("smb", conf.settings("localhost")) is False


# -- the agent -----------------------------------------------------------------------


def agent_env(root: Path, **settings: object) -> Env:
    """doctor's view of an agent socket under ``root`` served by us, with a restore key."""
    restore = root / "id_restore"
    Path(f"{restore}.pub").write_text("")
    agent = {"socket": str(root / "agent.sock"), "restore_key": str(restore), **settings}
    data = {"agent": agent, "state": {"dir": str(root)}, "mux": {"control_dir": "/run/bpa"}}
    config = from_mapping(data, str(root / "config.toml"), home=root)
    ctx = Context(config, root / "config.toml", pwd.getpwuid(os.getuid()), Path("/"))
    return Env(ctx, confdir.ConfDir(root, root), root, root)


def test_the_agent_and_restore_key_checks_share_one_probe(tmp_path: Path) -> None:
    env = agent_env(tmp_path)
    probes: list[socket.socket] = []

    def no_keys(conn: socket.socket) -> None:
        probes.append(conn)
        conn.recv(16)
        conn.sendall(protocol.frame(protocol.SSH_AGENT_IDENTITIES_ANSWER, bytes(4)))  # none

    with listener(env.ctx.config.agent.socket, no_keys):
        findings = run_checks(env, [check_agent, check_restore_key])
    assert len(probes) == 1
    key, pid, user = env.ctx.config.agent.restore_key, os.getpid(), env.ctx.user.pw_name
    waiting = "no keys loaded (or the agent is locked); run ssh-add"
    fix = f"su - {user}, then ssh-add (or backuppc-agent add)"
    assert [finding.line() for finding in findings] == [
        f"FAIL agent: waiting: {waiting} (ssh-agent pid {pid}, supervisor NOT running); fix: {fix}",
        f"ok   restore key: {key}: not armed (restores fail fast until 'ssh-add -t 1h {key}')",
    ]


def test_with_no_agent_only_the_agent_check_says_why(tmp_path: Path) -> None:
    env = agent_env(tmp_path)
    [finding] = run_checks(env, [check_agent, check_restore_key])
    socket_path = env.ctx.config.agent.socket
    assert finding.line().startswith(f"FAIL agent: no agent on {socket_path}: no agent socket at")


def test_a_stored_jwe_is_read_as_unlock_reads_it_bounded(tmp_path: Path) -> None:
    key = tmp_path / "id_a"
    env = agent_env(tmp_path, unlock="tang", keys=[str(key)])
    where = tang.jwe_path(env.ctx.config.state.dir, key)
    where.parent.mkdir()
    where.write_bytes(b"x" * (tang.JWE_MAX_BYTES + 1))
    where.chmod(0o600)
    fix = f"backuppc-agent passphrase set {key} --tang URL"
    assert [finding.line() for finding in check_unlock(env)] == [
        'ok   unlock: unattended unlock: "tang"',
        f"FAIL tang: {key}: {where}: larger than {tang.JWE_MAX_BYTES} bytes; fix: {fix}",
    ]
