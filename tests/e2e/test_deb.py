"""The operator's whole path on the installed Debian package, with the real BackupPC.

`make deb` builds the package in this run; apt-get installs it; from then on only
/usr/bin/backuppc-agent (Debian's python3, python3-keyring, python3-prometheus-
client: the package's own imports) and BackupPC's own server are used:
install, the sysvinit script through `service`, `su - backuppc` on a terminal,
ssh-add at its prompt, trust answered y, doctor, a dump BackupPC schedules
itself, a stop during a slow dump, Debian's stock localhost host, a restore, and
apt-get purge. The tests run in file order and build on each other.

Everything this module changes on the machine is put back: the package is
purged, BackupPC stopped, its config files, hosts and the backuppc account's
~/.ssh and login files restored.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import test_backuppc as bpc
from tests.e2e.terminal import Terminal
from tests.helpers import ROOT, wait_for
from tests.scrape import scrape
from tests.sshd import Sshd, kill_user_processes, running_sshd, user_processes

PROGRAM = Path("/usr/bin/backuppc-agent")
HOME = bpc.TOPDIR
SSH_DIR = HOME / ".ssh"
AGENT_SOCKET = SSH_DIR / "agent.socket"
CONFIG = Path("/etc/backuppc-agent/config.toml")
DEFAULT_BACKUPPC = Path("/etc/default/backuppc")
CLIENT, SLOW = "bpa-deb-a", "bpa-deb-slow"
ADDRESS = "127.0.0.6"
PASSPHRASE = "deb e2e passphrase 4711"
MARKER = "# >>> backuppc-agent (sha256:"
SAVED = (
    bpc.CONF_DIR / "config.pl",
    bpc.CONF_DIR / "hosts",
    DEFAULT_BACKUPPC,
    HOME / ".profile",
    HOME / ".bash_profile",
)
APT_ENV = {"PATH": bpc.ENV["PATH"], "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
BUILD_TOOLS = ("dpkg-buildpackage", "dh_python3", "lintian")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root("installs a Debian package and drives the real BackupPC"),
    pytest.mark.skipif(not (bpc.BPC / "BackupPC").exists(), reason="needs the backuppc package"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in BUILD_TOOLS),
        reason="needs debhelper, dh-python and lintian (tests/system-deps.sh)",
    ),
]


def run(*argv: str, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[call-overload]
    )


def apt(*args: str) -> subprocess.CompletedProcess[str]:
    """apt-get as the shared machine wants it: one apt at a time (the lock file)."""
    argv = ("flock", "/tmp/bpa-apt.lock", "apt-get", "-y", "-q", *args)
    return run(*argv, timeout=600, env=APT_ENV)


def installed() -> bool:
    done = run("dpkg-query", "-W", "-f=${Status}", "backuppc-agent")
    return "install ok installed" in done.stdout


def dump_ended(log: str, host: str) -> bool:
    """True once the last dump of ``host`` that BackupPC started has ended, either way."""
    after = log.rpartition(f"Started full backup on {host}")
    if not after[1]:
        return False
    endings = (f"Finished full backup on {host}", f"Backup failed on {host}",
               f"Backup canceled on {host}")  # fmt: skip
    return any(ending in after[2] for ending in endings)


def backuppc_mesg(*words: str) -> subprocess.CompletedProcess[str]:
    return bpc.run_bpc(str(bpc.BPC / "BackupPC_serverMesg"), *words)


@dataclass
class Machine:
    """What the fixture set up: the client's sshd, its shares, the log offset."""

    root: Path
    sshd: Sshd
    shares: list[Path]
    restore_target: Path
    log_offset: int
    install_output: str
    purge_output: str = ""

    def log(self) -> str:
        return bpc._log_since(self.log_offset)

    def newest_log(self, client: str, pattern: str) -> str:
        logs = sorted((bpc.TOPDIR / "pc" / client).glob(pattern), key=lambda p: p.stat().st_mtime)
        assert logs, f"no {pattern} for {client}"
        return bpc.run_bpc(str(bpc.BPC / "BackupPC_zcat"), str(logs[-1])).stdout


def _save() -> dict[Path, bytes | None]:
    return {path: path.read_bytes() if path.exists() else None for path in SAVED}


def _restore(saved: dict[Path, bytes | None]) -> None:
    for path, data in saved.items():
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(data)


def _client_files(root: Path) -> tuple[list[Path], Path]:
    shares = []
    for index in (1, 2):
        share = root / "shares" / f"share{index}"
        share.mkdir(parents=True)
        for number in range(3):
            (share / f"file{number}.txt").write_text(f"share {index} file {number}\n" * 40)
        shares.append(share)
    slow = root / "shares" / "big"
    slow.mkdir()
    (slow / "random.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    run("chmod", "-R", "a+rX", str(root / "shares"))
    target = root / "restore-target"
    target.mkdir()
    shutil.chown(target, "bpaclient", "bpaclient")
    return shares, target


def _host_files(root: Path, shares: list[Path]) -> None:
    slow_rsync = root / "slow-rsync"
    slow_rsync.write_text(bpc.SLOW_RSYNC)
    slow_rsync.chmod(0o755)
    common = f"$Conf{{XferMethod}} = 'rsync';\n$Conf{{ClientNameAlias}} = '{ADDRESS}';\n"
    common += "$Conf{PingCmd} = '/bin/true';\n$Conf{XferLogLevel} = 1;\n"
    listed = ", ".join(f"'{share}'" for share in shares)
    (bpc.CONF_DIR / f"{CLIENT}.pl").write_text(common + f"$Conf{{RsyncShareName}} = [{listed}];\n")
    (bpc.CONF_DIR / f"{SLOW}.pl").write_text(
        common + f"$Conf{{RsyncShareName}} = ['{root / 'shares' / 'big'}'];\n"
        f"$Conf{{RsyncClientPath}} = '{slow_rsync}';\n$Conf{{BackupsDisable}} = 1;\n"
    )
    hosts = (bpc.CONF_DIR / "hosts").read_text()
    (bpc.CONF_DIR / "hosts").write_text(hosts + f"{CLIENT} 0 backuppc\n{SLOW} 0 backuppc\n")


def _build_and_install() -> None:
    started = time.monotonic()
    built = run("make", "deb", timeout=900, cwd=ROOT)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    print(f"make deb: {time.monotonic() - started:.1f} s")  # the added CI time, in -rA
    debs = sorted((ROOT / "dist").glob("backuppc-agent_*_all.deb"))
    done = apt("install", f"./{debs[-1].relative_to(ROOT)}")
    if done.returncode != 0:
        raise AssertionError(done.stdout[-3000:] + done.stderr[-3000:])


def _user_key() -> None:
    """The backuppc account's own key, as an operator makes it (passphrase-protected)."""
    key = SSH_DIR / "id_ed25519"
    done = bpc.run_bpc("ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key))
    assert done.returncode == 0, done.stderr


def _start_services() -> None:
    started = run("service", "backuppc-agent", "start", env={"PATH": bpc.ENV["PATH"]})
    assert started.returncode == 0, started.stdout + started.stderr
    wait_for(AGENT_SOCKET.exists, timeout=20)
    server = run("service", "backuppc", "start", env={"PATH": bpc.ENV["PATH"]})
    assert server.returncode == 0, server.stdout + server.stderr
    wait_for(bpc.server_running, timeout=20)


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    with bpc.backuppc_lock():
        yield from _machine()


def _machine() -> Iterator[Machine]:
    if bpc.server_running():
        pytest.skip("a BackupPC server is already running on this machine")
    if installed():
        pytest.skip("backuppc-agent is already installed here: not touching it")
    saved = _save()
    ssh_saved = Path(tempfile.mkdtemp(prefix="bpa-deb-ssh-"))
    had_ssh = SSH_DIR.is_dir()
    if had_ssh:  # cp -a: owners and modes too (ssh refuses keys that are not private)
        assert run("cp", "-a", str(SSH_DIR), str(ssh_saved / "ssh")).returncode == 0
    had_localhost = (bpc.TOPDIR / "pc" / "localhost").exists()
    root = Path(tempfile.mkdtemp(prefix="bpa-deb-"))
    root.chmod(0o755)
    try:
        _build_and_install()
        _user_key()
        with running_sshd(ADDRESS, Path(f"{SSH_DIR / 'id_ed25519'}")) as sshd:
            shares, target = _client_files(root)
            _host_files(root, shares)
            offset = bpc.LOG.stat().st_size if bpc.LOG.exists() else 0
            installed_out = run(str(PROGRAM), "install", "--client-user", "bpaclient")
            assert installed_out.returncode == 0, installed_out.stdout + installed_out.stderr
            text = CONFIG.read_text().replace("# wait_seconds = 30.0", "wait_seconds = 3.0")
            CONFIG.write_text(text)
            _start_services()
            yield Machine(root, sshd, shares, target, offset, installed_out.stdout)
    finally:
        _teardown(root, saved, ssh_saved, had_ssh, had_localhost)


def _teardown(
    root: Path, saved: dict[Path, bytes | None], ssh_saved: Path, had_ssh: bool, had_localhost: bool
) -> None:
    if installed():
        apt("purge", "backuppc-agent")
    run("service", "backuppc", "stop", env={"PATH": bpc.ENV["PATH"]})
    kill_user_processes("backuppc", "backuppc-agent")
    kill_user_processes("backuppc", "ssh-agent")
    kill_user_processes("backuppc", str(SSH_DIR))
    bpc.kill_backuppc_leftovers(root)
    kill_user_processes("bpaclient")
    _restore(saved)
    for client in (CLIENT, SLOW):
        (bpc.CONF_DIR / f"{client}.pl").unlink(missing_ok=True)
        shutil.rmtree(bpc.TOPDIR / "pc" / client, ignore_errors=True)
    if not had_localhost:
        shutil.rmtree(bpc.TOPDIR / "pc" / "localhost", ignore_errors=True)
    shutil.rmtree(SSH_DIR, ignore_errors=True)
    if had_ssh:
        run("cp", "-a", str(ssh_saved / "ssh"), str(SSH_DIR))
    shutil.rmtree(ssh_saved, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


# -- before the package: a venv that backuppc cannot run ----------------------------------


def test_install_from_a_venv_backuppc_cannot_run_is_refused_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """First, before the module's fixture takes the machine (and its lock) for the rest."""
    with bpc.backuppc_lock():
        private = tmp_path / "private"
        private.mkdir(mode=0o700)  # like a checkout under /root: backuppc cannot enter it
        venv = private / "venv"
        made = run("/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages",
                   str(venv))  # fmt: skip
        assert made.returncode == 0, made.stderr
        code = "import sysconfig; print(sysconfig.get_path('purelib'))"
        site = run(str(venv / "bin/python"), "-c", code)
        Path(site.stdout.strip(), "backuppc_agent_tree.pth").write_text(f"{ROOT}\n")
        program = venv / "bin" / "backuppc-agent"
        program.write_text(
            f"#!{venv}/bin/python\nimport sys\n"
            "from backuppc_agent.cli.main import main\nsys.exit(main())\n"
        )
        program.chmod(0o755)
        watched = [*SAVED, CONFIG, Path("/etc/init.d/backuppc-agent")]
        watched.append(SSH_DIR / "backuppc-agent.conf")
        before = {path: path.read_bytes() if path.exists() else None for path in watched}
        done = run(str(program), "install")
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout == ""
        [line] = done.stderr.splitlines()
        assert f"refused, nothing written: user backuppc cannot run {program}" in line
        assert "/usr/bin/python3 -m venv /opt/backuppc-agent" in line
        assert {path: path.read_bytes() if path.exists() else None for path in watched} == before


# -- the operator's path, in order ----------------------------------------------------------


def test_install_wires_backuppc_in_one_step_and_says_it_appended(machine: Machine) -> None:
    out = machine.install_output
    assert "append to  /etc/backuppc/config.pl (BackupPC config)" in out, out
    assert "unchanged  /etc/init.d/backuppc-agent (init script)" in out, out
    text = (bpc.CONF_DIR / "config.pl").read_text()
    assert text.count(MARKER) == 1
    assert "/usr/bin/backuppc-agent --config /etc/backuppc-agent/config.toml hook pre-dump" in text
    assert "--xfer-method $XferMethod" in text
    status = run("service", "backuppc-agent", "status", env={"PATH": bpc.ENV["PATH"]})
    assert status.returncode == 0, status.stdout + status.stderr


@contextmanager
def ping_as_any_user() -> Iterator[None]:
    """Unprivileged ICMP echo, as a booted Debian 13 has it.

    Debian 13's ping has no file capability: it relies on net.ipv4.ping_group_range,
    which systemd-sysctl opens to every group at boot. Where systemd is not PID 1 the
    kernel's default (no group) stays, BackupPC's default PingCmd fails as backuppc
    and the stock host is never dumped. Opened as systemd would, then put back.
    """
    sysctl = Path("/proc/sys/net/ipv4/ping_group_range")
    before = sysctl.read_text()
    probe = ("runuser", "-u", "backuppc", "--", "ping", "-c", "1", "-W", "2", "127.0.0.1")
    if run(*probe, timeout=30).returncode != 0:
        sysctl.write_text("0 2147483647\n")
    try:
        yield
    finally:
        sysctl.write_text(before)


def test_stock_localhost_over_local_tar_is_not_held_without_keys(machine: Machine) -> None:
    with ping_as_any_user():
        done = backuppc_mesg("backup", "localhost", "localhost", "backuppc", "doFull")
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: dump_ended(machine.log(), "localhost"), timeout=120)
    xferlog = machine.newest_log("localhost", "XferLOG*.z")
    assert "DumpPreUserCmd returned error" not in xferlog, xferlog[:3000]
    assert "does not use ssh: not gated" in xferlog, xferlog[:3000]


def test_trust_answered_y_at_the_prompt_adds_the_client(machine: Machine) -> None:
    term = Terminal([str(PROGRAM), "trust", CLIENT])
    term.expect("[y/N]")
    term.send("y")
    term.expect("added")
    assert term.close() == 0, term.output
    assert ADDRESS in (SSH_DIR / "known_hosts").read_text()
    assert (SSH_DIR / "known_hosts").stat().st_uid == os.stat(HOME).st_uid


def test_login_says_backups_are_held_and_ssh_add_at_the_prompt_releases_a_scheduled_dump(
    machine: Machine,
) -> None:
    before = machine.sshd.accepted_publickey()
    term = Terminal(["su", "-", "backuppc"])
    term.expect("backuppc-agent: backups are held: no keys loaded (or the agent is locked)")
    term.send("ssh-add")
    term.expect("Enter passphrase for")
    term.send(PASSPHRASE)
    term.expect("Identity added")
    term.send("exit")
    assert term.close() == 0, term.output
    # Keys arrived: the supervisor sends `backup all`; BackupPC's own queue dumps the client.
    wait_for(lambda: f"Finished full backup on {CLIENT}" in machine.log(), timeout=120)
    assert machine.sshd.accepted_publickey() - before == 1  # two shares, one authentication
    xferlog = machine.newest_log(CLIENT, "XferLOG.0.z")
    assert f"ssh master for {CLIENT} is up" in xferlog


def test_doctor_is_all_ok(machine: Machine) -> None:
    # /proc/swaps of a fixture without swap: the test machine's own swap is not the point.
    procfs = machine.root / "proc"
    procfs.mkdir(exist_ok=True)
    (procfs / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n")
    done = run(str(PROGRAM), "doctor", "--procfs", str(procfs))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert "skip known_hosts: localhost: XferMethod tar" in done.stdout
    assert "ok   access: backuppc runs /usr/bin/backuppc-agent" in done.stdout


def test_man_shows_the_page_built_from_the_parser_with_each_commands_options(
    machine: Machine,
) -> None:
    located = run("man", "-w", "backuppc-agent", "backuppc-agent-askpass")
    assert located.returncode == 0, located.stdout + located.stderr
    assert "/usr/share/man/man1/backuppc-agent.1.gz" in located.stdout.split()
    # Wide, so that no option is hyphenated at a line end.
    env = {"PATH": bpc.ENV["PATH"], "LANG": "C.UTF-8", "MANWIDTH": "200"}
    page = run("man", "-P", "cat", "backuppc-agent", env=env)
    assert page.returncode == 0, page.stderr
    # The section of one command: its usage line has the global and its own options.
    assert "usage: backuppc-agent doctor [-h] [--config PATH]" in page.stdout, page.stdout[:3000]
    assert "--procfs DIR" in page.stdout


def test_the_packaged_exporter_serves_metrics_on_debians_prometheus_client(
    machine: Machine,
) -> None:
    # The supervisor's default [metrics] listen, from python3-prometheus-client (0.16 on 12).
    scraped = scrape("http://127.0.0.1:9842/metrics")
    assert scraped.value("ready") == 1.0, scraped.text[:2000]


def _request_restore(machine: Machine) -> None:
    share = machine.shares[0]
    request = (
        "%RestoreReq = (\n"
        f"  'fileList' => ['/file0.txt'], 'hostDest' => '{CLIENT}', 'hostSrc' => '{CLIENT}',\n"
        f"  'num' => 0, 'pathHdrDest' => '/', 'pathHdrSrc' => '/', 'reqTime' => {int(time.time())},"
        f"\n  'shareDest' => '{machine.restore_target}', 'shareSrc' => '{share}',"
        " 'user' => 'backuppc'\n);\n"
    )
    name = f"restoreReq.{os.getpid()}.{time.monotonic_ns()}"
    path = bpc.TOPDIR / "pc" / CLIENT / name
    path.write_text(request)
    shutil.chown(path, "backuppc", "backuppc")
    # As the CGI does: the "IP" of a host that is not DHCP is its name (an alias
    # there would be taken for a DHCP address and fail the netbios name check).
    done = backuppc_mesg("restore", CLIENT, CLIENT, "backuppc", name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_restore_of_one_file_rides_the_clients_master(machine: Machine) -> None:
    before = machine.sshd.accepted_publickey()
    starts = machine.log().count(f"Finished restore on {CLIENT}")
    _request_restore(machine)
    wait_for(lambda: machine.log().count(f"Finished restore on {CLIENT}") > starts, timeout=60)
    restored = machine.restore_target / "file0.txt"
    assert restored.read_text() == (machine.shares[0] / "file0.txt").read_text()
    assert machine.sshd.accepted_publickey() == before
    restorelog = machine.newest_log(CLIENT, "RestoreLOG.*.z")
    assert f"ssh master for {CLIENT} is up" in restorelog, restorelog[:3000]


def test_a_server_stop_during_a_slow_dump_leaves_nothing_on_the_client(machine: Machine) -> None:
    done = backuppc_mesg("backup", SLOW, SLOW, "backuppc", "doFull")  # "IP": see the restore
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: any("--server" in cmd for _, cmd in bpc.remote_jobs()), timeout=60)
    time.sleep(1.5)  # mid-transfer: the share takes ~100 s at the client's bandwidth
    stopped = backuppc_mesg("stop", SLOW, "backuppc", "0")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_for(lambda: not bpc.remote_jobs(), timeout=30)
    wait_for(lambda: dump_ended(machine.log(), SLOW), timeout=30)
    assert f"Backup canceled on {SLOW}" in machine.log()


def test_without_keys_a_restore_fails_in_its_pre_hook_with_the_clear_line(
    machine: Machine,
) -> None:
    env = {"PATH": bpc.ENV["PATH"], "SSH_AUTH_SOCK": str(AGENT_SOCKET)}
    assert run("ssh-add", "-D", env=env).returncode == 0
    failures = machine.log().count(f"Restore failed on {CLIENT}")
    _request_restore(machine)
    wait_for(lambda: machine.log().count(f"Restore failed on {CLIENT}") > failures, timeout=60)
    assert f"Restore failed on {CLIENT} (RestorePreUserCmd returned error status" in machine.log()
    restorelog = machine.newest_log(CLIENT, "RestoreLOG.*.z")
    assert "backuppc-agent: SSH keys not loaded; run 'ssh-add' as backuppc" in restorelog
    assert "RestorePreUserCmd returned error status" in restorelog, restorelog[:3000]


def test_purge_leaves_no_process_no_file_of_ours_and_backuppc_running(machine: Machine) -> None:
    done = apt("purge", "backuppc-agent")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"left {SSH_DIR}/known_hosts" in done.stdout, done.stdout
    assert not installed()
    ours = [
        (pid, cmd) for pid, cmd in user_processes("backuppc")
        if "backuppc-agent" in cmd or "ssh-agent" in cmd or str(SSH_DIR / "mux") in cmd
    ]  # fmt: skip
    assert ours == []
    gone = [PROGRAM, Path("/etc/backuppc-agent"), Path("/etc/init.d/backuppc-agent"),
            AGENT_SOCKET, SSH_DIR / "agent.env", SSH_DIR / "mux", SSH_DIR / "backuppc-agent.conf",
            HOME / ".local/state/backuppc-agent", Path("/var/log/backuppc-agent.log")]  # fmt: skip
    assert [path for path in gone if path.exists()] == []
    for path in (bpc.CONF_DIR / "config.pl", DEFAULT_BACKUPPC, HOME / ".profile"):
        assert MARKER not in (path.read_text() if path.exists() else ""), path
    code = "our %Conf; do $ARGV[0]; die $@ if $@; print $Conf{XferMethod}"
    perl = run("perl", "-e", code, str(bpc.CONF_DIR / "config.pl"))
    assert perl.returncode == 0, perl.stderr
    assert perl.stdout
    assert bpc.server_running()
