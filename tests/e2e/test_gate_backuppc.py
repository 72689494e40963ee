"""A real BackupPC 4 backs up and restores through the client gate.

Client sshds: 127.0.0.83 (the gate in backup mode) and 127.0.0.84 (restore
mode), user bpaclient, the entry ``restrict,command="GATE MODE AUTHKEYS"``.
Hosts: an rsync host behind backuppc-agent's hooks and masters (three shares,
one authentication; an abort), a tar-over-ssh host (TarClientCmd logging in as
bpaclient), an rsync host left with Debian's --protect-args (refused, with the
reason in its XferLOG), a host dumped and restored through the restore-mode
gate, and one set up as client-setup leaves it (127.0.0.80: backup key and restore
key each behind the gate), whose restore fails fast until the restore key is
loaded. The gate refuses rsync -s, so the rsync hosts drop --protect-args from
RsyncArgs and RsyncRestoreArgs. Holds E2E_LOCK; everything is put back after.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_backuppc import (
    BPC,
    CONF_DIR,
    ENV,
    TOPDIR,
    _install_program,
    as_backuppc,
    backuppc_lock,
    kill_backuppc_leftovers,
    operator_home,
    python_or_skip,
    run_bpc,
    serving,
)
from tests.gate import gate_copy
from tests.helpers import wait_for, write_config
from tests.sshd import (
    CLIENT_USER,
    Sshd,
    kill_user_processes,
    needs_root,
    public_key_line,
    running_sshd,
    user_processes,
)

BACKUP_ADDRESS = "127.0.0.83"
RESTORE_ADDRESS = "127.0.0.84"
#: A client set up as client-setup leaves it: the backup key gated, the restore key too.
KEYS_ADDRESS = "127.0.0.80"
RSYNC_HOST, TAR_HOST, SLOW_HOST = "bpa-gate-rsync", "bpa-gate-tar", "bpa-gate-slow"
PROTECTED_HOST, RESTORE_HOST = "bpa-gate-protected", "bpa-gate-restore"
KEYS_HOST = "bpa-gate-keys"
HOSTS = (RSYNC_HOST, TAR_HOST, SLOW_HOST, PROTECTED_HOST, RESTORE_HOST, KEYS_HOST)
PASSPHRASE = "gate e2e passphrase 4242"
NO_PROTECT_ARGS = (
    "$Conf{RsyncArgs} = [grep { $_ ne '--protect-args' } @{$Conf{RsyncArgs}}];\n"
    "$Conf{RsyncRestoreArgs} = [grep { $_ ne '--protect-args' } @{$Conf{RsyncRestoreArgs}}];\n"
)
#: The client's rsync on sshd's PATH: slow for the share named "big", so an abort
#: lands mid-transfer; the gate checked its words before it runs.
SLOW_RSYNC = """#!/bin/sh
case "$*" in
    *big*) exec /usr/bin/rsync --bwlimit=200 "$@" ;;
esac
exec /usr/bin/rsync "$@"
"""

pytestmark = [
    needs_root,
    pytest.mark.skipif(not (BPC / "BackupPC").exists(), reason="needs the backuppc package"),
]


@dataclass
class GateSite:
    root: Path
    key: Path
    agent_socket: Path
    backup_sshd: Sshd
    restore_sshd: Sshd
    shares: dict[str, list[Path]]
    keys_sshd: Sshd
    gate: Path
    askpass: Path

    def backups(self, host: str) -> int:
        path = TOPDIR / "pc" / host / "backups"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def xferlog(self, host: str) -> str:
        logs = sorted((TOPDIR / "pc" / host).glob("XferLOG*.z"), key=lambda p: p.stat().st_mtime)
        return run_bpc(str(BPC / "BackupPC_zcat"), str(logs[-1])).stdout


def _shares(root: Path) -> dict[str, list[Path]]:
    shares: dict[str, list[Path]] = {}
    for host in (RSYNC_HOST, PROTECTED_HOST, RESTORE_HOST, KEYS_HOST):
        dirs = []
        for index in range(1, 4 if host == RSYNC_HOST else 2):
            share = root / "shares" / host / f"share{index}"
            (share / "sub").mkdir(parents=True)
            (share / "a.txt").write_text(f"{host} {index} alpha\n" * 20)
            (share / "sub" / "b.txt").write_text(f"{host} {index} beta\n")
            dirs.append(share)
        shares[host] = dirs
    tar_share = root / "shares" / TAR_HOST / "share (tar)"
    (tar_share / "sub").mkdir(parents=True)
    (tar_share / "t.txt").write_text("tar alpha\n")
    (tar_share / "sub" / "u.txt").write_text("tar beta\n")
    shares[TAR_HOST] = [tar_share]
    big = root / "shares" / SLOW_HOST / "big"
    big.mkdir(parents=True)
    (big / "random.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    shares[SLOW_HOST] = [big]
    subprocess.run(["chmod", "-R", "a+rX", str(root / "shares")], check=True)
    # the restore writes as bpaclient
    for host in (RESTORE_HOST, KEYS_HOST):
        subprocess.run(["chown", "-R", CLIENT_USER, str(root / "shares" / host)], check=True)
    return shares


def _gate_entry(sshd: Sshd, gate: Path, mode: str, key: Path) -> None:
    sshd.authorized_keys.write_text(
        f'restrict,command="{gate} {mode} {sshd.authorized_keys}" {public_key_line(key)}\n'
    )


def _share_list(shares: list[Path]) -> str:
    return "[" + ", ".join(f"'{share}'" for share in shares) + "]"


def _host_files(site_root: Path, program: Path, config: Path, home: Path,
                shares: dict[str, list[Path]]) -> dict[str, str]:  # fmt: skip
    hooks = subprocess.run(
        as_backuppc(
            str(program), "--config", str(config), "backuppc-config", "--user", CLIENT_USER
        ),
        env=ENV, capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    plain_ssh = (
        f"$sshPath -o IdentityAgent={home / 'agent.sock'} -o BatchMode=yes"
        f" -o UserKnownHostsFile={home / 'known_hosts'} -l {CLIENT_USER}"
    )
    plain_rsync = f"$Conf{{RsyncSshArgs}} = ['-e', '{plain_ssh}'];\n"
    common = "$Conf{PingCmd} = '/bin/true';\n$Conf{BackupsDisable} = 1;\n$Conf{XferLogLevel} = 1;\n"

    def rsync(address: str, share: list[Path], extra: str) -> str:
        return (
            f"$Conf{{XferMethod}} = 'rsync';\n$Conf{{ClientNameAlias}} = '{address}';\n"
            f"$Conf{{RsyncShareName}} = {_share_list(share)};\n{common}{extra}"
        )

    tar_cmd = (
        plain_ssh.replace("$sshPath", "$sshPath -q -x -n")
        + " $host env LC_ALL=C $tarPath -c -v -f - -C $shareName+ --totals"
    )
    return {
        RSYNC_HOST: rsync(BACKUP_ADDRESS, shares[RSYNC_HOST], NO_PROTECT_ARGS + hooks),
        SLOW_HOST: rsync(BACKUP_ADDRESS, shares[SLOW_HOST], NO_PROTECT_ARGS + hooks),
        PROTECTED_HOST: rsync(BACKUP_ADDRESS, shares[PROTECTED_HOST], plain_rsync),
        RESTORE_HOST: rsync(RESTORE_ADDRESS, shares[RESTORE_HOST], NO_PROTECT_ARGS + plain_rsync),
        KEYS_HOST: rsync(KEYS_ADDRESS, shares[KEYS_HOST], NO_PROTECT_ARGS + hooks),
        TAR_HOST: (
            f"$Conf{{XferMethod}} = 'tar';\n$Conf{{ClientNameAlias}} = '{BACKUP_ADDRESS}';\n"
            f"$Conf{{TarShareName}} = {_share_list(shares[TAR_HOST])};\n{common}"
            f"$Conf{{TarClientCmd}} = '{tar_cmd}';\n"
        ),
    }  # fmt: skip


def _clean() -> None:
    for host in HOSTS:
        shutil.rmtree(TOPDIR / "pc" / host, ignore_errors=True)
        (CONF_DIR / f"{host}.pl").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def site() -> Iterator[GateSite]:
    with backuppc_lock():
        yield from _site()


def _site() -> Iterator[GateSite]:
    python = python_or_skip()
    root = Path(tempfile.mkdtemp(prefix="bpa-gate-e2e-"))
    root.chmod(0o755)
    hosts_saved = (CONF_DIR / "hosts").read_bytes()
    try:
        program = _install_program(root, python)
        shares = _shares(root)
        gate = gate_copy(root / "client-bin")
        wrappers = root / "client-path"
        wrappers.mkdir(mode=0o755)
        (wrappers / "rsync").write_text(SLOW_RSYNC)
        (wrappers / "rsync").chmod(0o755)
        home, key, askpass = operator_home(root, PASSPHRASE)
        config = write_config(
            root / "config.toml",
            agent={"socket": home / "agent.sock", "env_file": home / "agent.env",
                   "poll_seconds": 0.1, "restore_key": home / "id_restore_ed25519",
                   "keys": [key]},
            state={"dir": home / "state"},
            metrics={"listen": ""},
            hooks={"wait_seconds": 2, "connect_timeout_seconds": 5},
            mux={"control_dir": home / "mux", "known_hosts": home / "known_hosts"},
        )  # fmt: skip
        config.chmod(0o644)
        path_line = f"SetEnv PATH={wrappers}:/usr/local/bin:/usr/bin:/bin\n"
        with (
            running_sshd(BACKUP_ADDRESS, key, extra_config=path_line) as backup_sshd,
            running_sshd(RESTORE_ADDRESS, key) as restore_sshd,
            running_sshd(KEYS_ADDRESS, key) as keys_sshd,
        ):
            _gate_entry(backup_sshd, gate, "backup", key)
            _gate_entry(restore_sshd, gate, "restore", key)
            _gate_entry(keys_sshd, gate, "backup", key)
            (home / "known_hosts").write_text(
                backup_sshd.known_hosts_line()
                + restore_sshd.known_hosts_line()
                + keys_sshd.known_hosts_line()
            )
            subprocess.run(["chown", "-R", "backuppc:backuppc", str(home)], check=True)
            _clean()
            for host, text in _host_files(root, program, config, home, shares).items():
                (CONF_DIR / f"{host}.pl").write_text(text)
            (CONF_DIR / "hosts").write_text(
                "host dhcp user moreUsers\n" + "".join(f"{h} 0 backuppc\n" for h in HOSTS)
            )
            with serving(root, program, config, home):
                gate_site = GateSite(
                    root, key, home / "agent.sock", backup_sshd, restore_sshd, shares, keys_sshd,
                    gate, askpass,
                )  # fmt: skip
                added = _as_backuppc_with_agent(gate_site, "ssh-add", str(key))
                assert added.returncode == 0, added.stderr
                yield gate_site
    finally:
        kill_backuppc_leftovers(root, HOSTS)
        kill_user_processes(CLIENT_USER, "rsync")
        (CONF_DIR / "hosts").write_bytes(hosts_saved)
        _clean()
        shutil.rmtree(root, ignore_errors=True)


def _dump(host: str, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_bpc(str(BPC / "BackupPC_dump"), *(flags or ("-f",)), "-v", host, timeout=timeout)


def test_a_full_dump_of_three_shares_through_the_gate_authenticates_once(site: GateSite) -> None:
    before = site.backup_sshd.accepted_publickey()
    done = _dump(RSYNC_HOST)
    assert done.returncode == 0, done.stdout[-3000:]
    assert site.backups(RSYNC_HOST) == 1, done.stdout[-3000:]
    assert site.backup_sshd.accepted_publickey() - before == 1
    assert "refused" not in site.xferlog(RSYNC_HOST)
    incr = _dump(RSYNC_HOST, "-i")
    assert site.backups(RSYNC_HOST) == 2, incr.stdout[-3000:]


def test_debians_protect_args_is_refused_with_the_reason_in_the_xferlog(site: GateSite) -> None:
    _dump(PROTECTED_HOST)
    assert site.backups(PROTECTED_HOST) == 0
    xferlog = site.xferlog(PROTECTED_HOST)
    assert "backuppc-agent-gate: refused: rsync's -s (--protect-args)" in xferlog, xferlog[-2000:]


def test_a_tar_host_backs_up_through_the_gate(site: GateSite) -> None:
    done = _dump(TAR_HOST)
    assert site.backups(TAR_HOST) == 1, done.stdout[-3000:]
    assert "refused" not in site.xferlog(TAR_HOST)
    time.sleep(1.1)  # --newer has a one-second grain
    (site.shares[TAR_HOST][0] / "new.txt").write_text("new\n")
    incr = _dump(TAR_HOST, "-i")
    assert site.backups(TAR_HOST) == 2, incr.stdout[-3000:]
    assert "new.txt" in site.xferlog(TAR_HOST)


def _client_rsyncs() -> list[tuple[int, str]]:
    return [p for p in user_processes(CLIENT_USER) if "rsync" in p[1]]


def test_an_aborted_dump_through_the_gate_leaves_nothing_on_the_client(site: GateSite) -> None:
    dump = subprocess.Popen(
        as_backuppc(str(BPC / "BackupPC_dump"), "-f", "-v", SLOW_HOST), env=ENV,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: any("--server" in cmd for _, cmd in _client_rsyncs()), timeout=30)
        time.sleep(1.5)  # mid-transfer: the share takes ~100 s at the client's bandwidth
        dump.send_signal(signal.SIGINT)  # one SIGINT, as BackupPC's stop sends
        dump.wait(timeout=30)
        wait_for(lambda: not _client_rsyncs(), timeout=10)
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    xferlog = site.xferlog(SLOW_HOST)
    assert "backuppc-agent: killed" in xferlog, xferlog[-3000:]
    assert "refused" not in xferlog


def test_a_restore_of_one_file_goes_through_the_restore_mode_gate(site: GateSite) -> None:
    done = _dump(RESTORE_HOST)
    assert site.backups(RESTORE_HOST) == 1, done.stdout[-3000:]
    share = site.shares[RESTORE_HOST][0]
    original = (share / "a.txt").read_text()
    (share / "a.txt").write_text("damaged\n")
    request = TOPDIR / "pc" / RESTORE_HOST / "restoreReq.gate"
    request.write_text(
        "%RestoreReq = (\n"
        f" 'num' => 0, 'hostSrc' => '{RESTORE_HOST}', 'shareSrc' => '{share}',"
        " 'pathHdrSrc' => '/',\n"
        f" 'hostDest' => '{RESTORE_HOST}', 'shareDest' => '{share}', 'pathHdrDest' => '/',\n"
        f" 'fileList' => ['/a.txt'], 'user' => 'backuppc', 'reqTime' => {int(time.time())});\n"
    )
    shutil.chown(request, "backuppc", "backuppc")
    before = site.restore_sshd.accepted_publickey()
    restored = run_bpc(
        str(BPC / "BackupPC_restore"), "-v", RESTORE_HOST, RESTORE_HOST, "restoreReq.gate",
        timeout=120,
    )  # fmt: skip
    assert "restore complete" in restored.stdout, restored.stdout[-3000:]
    assert (share / "a.txt").read_text() == original
    assert (share / "sub" / "b.txt").exists()
    assert site.restore_sshd.accepted_publickey() - before == 1


def _restore_request(host: str, share: Path, name: str) -> str:
    """Ask BackupPC (as its CGI would) to restore /a.txt of the last backup in place."""
    request = TOPDIR / "pc" / host / name
    request.write_text(
        "%RestoreReq = (\n"
        f" 'num' => 0, 'hostSrc' => '{host}', 'shareSrc' => '{share}', 'pathHdrSrc' => '/',\n"
        f" 'hostDest' => '{host}', 'shareDest' => '{share}', 'pathHdrDest' => '/',\n"
        f" 'fileList' => ['/a.txt'], 'user' => 'backuppc', 'reqTime' => {int(time.time())});\n"
    )
    shutil.chown(request, "backuppc", "backuppc")
    restored = run_bpc(str(BPC / "BackupPC_restore"), "-v", host, host, name, timeout=120)
    logs = sorted((TOPDIR / "pc" / host).glob("RestoreLOG*.z"), key=lambda p: p.stat().st_mtime)
    restorelog = run_bpc(str(BPC / "BackupPC_zcat"), str(logs[-1])).stdout if logs else ""
    return restored.stdout + restorelog


def _as_backuppc_with_agent(site: GateSite, *argv: str) -> subprocess.CompletedProcess[str]:
    env = ENV | {"SSH_AUTH_SOCK": str(site.agent_socket), "SSH_ASKPASS": str(site.askpass),
                 "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}  # fmt: skip
    return subprocess.run(
        as_backuppc(*argv), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def test_a_restore_needs_the_restore_key_loaded_and_runs_on_it_alone(site: GateSite) -> None:
    """As client-setup leaves a client: restores fail fast until the operator loads the key."""
    restore_key = site.agent_socket.parent / "id_restore_ed25519"
    made = _as_backuppc_with_agent(
        site, "ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(restore_key)
    )
    assert made.returncode == 0, made.stderr
    try:
        site.keys_sshd.authorized_keys.write_text(
            site.keys_sshd.authorized_keys.read_text()
            + f'restrict,command="{site.gate} restore {site.keys_sshd.authorized_keys}" '
            + public_key_line(restore_key) + "\n"
        )  # fmt: skip
        done = _dump(KEYS_HOST)
        assert site.backups(KEYS_HOST) == 1, done.stdout[-3000:]
        share = site.shares[KEYS_HOST][0]
        original = (share / "a.txt").read_text()
        (share / "a.txt").write_text("damaged\n")
        refused = _restore_request(KEYS_HOST, share, "restoreReq.nokey")
        line = (
            f"restores need the restore key, which is not loaded: run 'ssh-add -t 1h {restore_key}'"
        )
        assert line in refused, refused[-3000:]
        assert (share / "a.txt").read_text() == "damaged\n"
        loaded = _as_backuppc_with_agent(site, "ssh-add", "-t", "600", str(restore_key))
        assert loaded.returncode == 0, loaded.stderr
        logins = site.keys_sshd.accepted_publickey()
        restored = _restore_request(KEYS_HOST, share, "restoreReq.key")
        assert "restore master" in restored, restored[-3000:]
        assert (share / "a.txt").read_text() == original, restored
        assert site.keys_sshd.accepted_publickey() - logins == 1  # the restore master's login
        fingerprint = subprocess.run(
            ["ssh-keygen", "-lf", f"{restore_key}.pub"], capture_output=True, text=True, check=True
        ).stdout.split()[1]
        accepted = [e for e in site.keys_sshd.logtext().splitlines() if "Accepted publickey" in e]
        assert fingerprint in accepted[-1]  # the restore key, alone
        assert not (site.agent_socket.parent / "mux" / "restore" / KEYS_HOST).exists()
    finally:
        _as_backuppc_with_agent(site, "ssh-add", "-d", f"{restore_key}.pub")
        restore_key.unlink(missing_ok=True)
        Path(f"{restore_key}.pub").unlink(missing_ok=True)
