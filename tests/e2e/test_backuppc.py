"""End to end with the real Debian BackupPC: hooks, masters and aborts as BackupPC runs them.

Everything BackupPC runs (the supervisor, the hooks, rsync_bpc's ssh) runs as
user backuppc with the lines printed by ``backuppc-config``. The venv's Python
may live under /root (mode 0700), so the package is copied next to a launcher
for a Python that backuppc can run (the venv's, else Debian's /usr/bin/python3):
everything BackupPC runs needs only the standard library.
Clients are sshds on 127.0.0.4 and 127.0.0.5 logging in user bpaclient.
/etc/backuppc/hosts is saved and restored; host .pl files, pc/ directories and
every process started here are removed afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, make_key, wait_for, write_config
from tests.sshd import Sshd, kill_user_processes, needs_root, running_sshd, user_processes

BPC = Path("/usr/share/backuppc/bin")
CONF_DIR = Path("/etc/backuppc")
TOPDIR = Path("/var/lib/backuppc")
LOG = TOPDIR / "log" / "LOG"
#: One real BackupPC at a time on this machine (it owns /run/backuppc and TOPDIR):
#: every test module that starts one holds an exclusive flock on this file.
E2E_LOCK = Path("/tmp/backuppc-e2e.lock")
CLIENT_A, CLIENT_B, CLIENT_SLOW = "bpa-e2e-a", "bpa-e2e-b", "bpa-e2e-slow"
CLIENTS = (CLIENT_A, CLIENT_B, CLIENT_SLOW)
WAIT_SECONDS = 2
#: The site's supervisor serves metrics here (e2e runs in its own network namespace).
METRICS_LISTEN = "127.0.0.1:19842"
PASSPHRASE = "e2e passphrase 0815"
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": str(TOPDIR),
    "USER": "backuppc",
    "LOGNAME": "backuppc",
    "LANG": "C.UTF-8",
}

pytestmark = [
    needs_root,
    pytest.mark.skipif(not (BPC / "BackupPC").exists(), reason="needs the backuppc package"),
]


def as_backuppc(*argv: str) -> list[str]:
    """argv that runs ``argv`` as user backuppc (exec, no fork: signals reach it)."""
    return ["setpriv", "--reuid=backuppc", "--regid=backuppc", "--init-groups", "--", *argv]


def run_bpc(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        as_backuppc(*argv), env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


def server_running() -> bool:
    """True if a BackupPC server process exists (connecting to its socket would kill it:
    the server dies of SIGPIPE when a client hangs up without a message).

    One in a container (the systemd tier's) has its own /etc and /run: not ours.
    """
    ours = os.readlink("/proc/self/ns/mnt")
    for entry in Path("/proc").iterdir():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
            same_namespace = os.readlink(entry / "ns" / "mnt") == ours
        except OSError:
            continue
        if same_namespace and any(w.endswith(b"/backuppc/bin/BackupPC") for w in words[:2]):
            return True
    return False


@dataclass
class Site:
    """The installation BackupPC uses in these tests."""

    root: Path
    program: Path
    config: Path
    home: Path
    key: Path
    askpass: Path
    servers: dict[str, Sshd]
    log_offset: int

    @property
    def agent_socket(self) -> Path:
        return self.home / "agent.sock"

    def ssh_add(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = ENV | {
            "SSH_AUTH_SOCK": str(self.agent_socket),
            "SSH_ASKPASS": str(self.askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": ":0",
        }
        return subprocess.run(
            as_backuppc("ssh-add", *args),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def new_log(self) -> str:
        return _log_since(self.log_offset)

    def xferlog_bad(self, client: str) -> str:
        """The failed dump's XferLOG (an aborted one is kept as a partial: XferLOG.N.z)."""
        pc = TOPDIR / "pc" / client
        logs = sorted(pc.glob("XferLOG.*.z"), key=lambda path: path.stat().st_mtime)
        done = run_bpc(str(BPC / "BackupPC_zcat"), str(logs[-1]))
        return done.stdout

    def backups(self, client: str) -> int:
        path = TOPDIR / "pc" / client / "backups"
        return len(path.read_text().splitlines()) if path.exists() else 0


def _python_for_backuppc() -> str | None:
    """A Python >= 3.11 that user backuppc can run (the venv's may sit under /root)."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        # Through sh: the exec setpriv itself does still has root's capabilities.
        check = subprocess.run(
            as_backuppc("/bin/sh", "-c", f"exec '{candidate}' -c 'import sqlite3, tomllib'"),
            env=ENV,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if check.returncode == 0:
            return candidate
    return None


def _install_program(root: Path, python: str) -> Path:
    """Copy the package where backuppc can read it, with a launcher for ``python``."""
    lib = root / "lib"
    shutil.copytree(
        ROOT / "backuppc_agent",
        lib / "backuppc_agent",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    subprocess.run([python, "-m", "compileall", "-q", str(lib)], check=True)
    program = root / "bin" / "backuppc-agent"
    program.parent.mkdir()
    program.write_text(
        f"#!{python} -s\nimport sys\n"
        f"sys.path.insert(0, {str(lib)!r})\n"
        "from backuppc_agent.cli.main import main\nsys.exit(main())\n"
    )
    program.chmod(0o755)
    subprocess.run(["chmod", "-R", "go+rX", str(root)], check=True)
    return program


def _make_shares(root: Path) -> dict[str, list[Path]]:
    shares = {}
    for client in (CLIENT_A, CLIENT_B):
        dirs = []
        for index in range(1, 4):
            share = root / "shares" / client / f"share{index}"
            share.mkdir(parents=True)
            for number in range(3):
                (share / f"file{number}.txt").write_text(f"{client} {index} {number}\n" * 50)
            dirs.append(share)
        shares[client] = dirs
    slow = root / "shares" / CLIENT_SLOW / "big"
    slow.mkdir(parents=True)
    (slow / "random.bin").write_bytes(os.urandom(20 * 1024 * 1024))
    shares[CLIENT_SLOW] = [slow]
    subprocess.run(["chmod", "-R", "a+rX", str(root / "shares")], check=True)
    return shares


SLOW_RSYNC = """#!/bin/sh
# A slow client rsync that ignores end-of-input: after rsync ends it keeps the
# session open, as a hung remote command would.
trap '' HUP INT PIPE
/usr/bin/rsync --bwlimit=200 "$@"
sleep 600
"""


def _write_config(site_root: Path, home: Path) -> Path:
    config = write_config(
        site_root / "config.toml",
        agent={"socket": home / "agent.sock", "env_file": home / "agent.env", "poll_seconds": 0.1},
        state={"dir": home / "state"},
        metrics={"listen": METRICS_LISTEN},
        hooks={
            "wait_seconds": WAIT_SECONDS,
            "connect_timeout_seconds": 5,
            "on_ready": "backup-all",
        },
        mux={"control_dir": home / "mux", "known_hosts": home / "known_hosts"},
    )
    config.chmod(0o644)
    return config


def _host_pl(client: str, address: str, shares: list[Path], lines: str) -> str:
    share_list = ", ".join(f"'{share}'" for share in shares)
    return (
        f"$Conf{{XferMethod}} = 'rsync';\n$Conf{{ClientNameAlias}} = '{address}';\n"
        f"$Conf{{RsyncShareName}} = [{share_list}];\n$Conf{{PingCmd}} = '/bin/true';\n"
        f"$Conf{{XferLogLevel}} = 1;\n{lines}"
    )


def _clean_pc_dirs() -> None:
    for client in CLIENTS:
        shutil.rmtree(TOPDIR / "pc" / client, ignore_errors=True)
        (CONF_DIR / f"{client}.pl").unlink(missing_ok=True)


@contextlib.contextmanager
def backuppc_lock() -> Iterator[None]:
    """Hold the machine-wide BackupPC lock (blocks while another test run holds it)."""
    fd = os.open(E2E_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with backuppc_lock():
        yield from _site()


def python_or_skip() -> str:
    """A Python backuppc can run; skip if none, or if a BackupPC server runs already."""
    if server_running():
        pytest.skip("a BackupPC server is already running on this machine")
    python = _python_for_backuppc()
    if python is None:
        pytest.skip("no Python >= 3.11 that user backuppc may run")
    return python


@contextlib.contextmanager
def serving(root: Path, program: Path, config: Path, home: Path) -> Iterator[int]:
    """BackupPC's server and our supervisor (``run``), both as backuppc; yields the LOG
    offset they started at. Both process groups are ended afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(["install", "-d", "-o", "backuppc", "/run/backuppc"], check=True)
        offset = LOG.stat().st_size if LOG.exists() else 0
        procs.append(subprocess.Popen(
            as_backuppc(str(BPC / "BackupPC")), env=ENV, stdin=subprocess.DEVNULL,
            start_new_session=True,
        ))  # fmt: skip
        wait_for(lambda: "started, pid" in _log_since(offset), timeout=20)
        with (root / "supervisor.log").open("ab") as log:
            procs.append(subprocess.Popen(
                as_backuppc(str(program), "--config", str(config), "run"), env=ENV,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            ))  # fmt: skip
        wait_for((home / "agent.sock").exists, timeout=15)
        yield offset
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def _site() -> Iterator[Site]:
    python = python_or_skip()
    root = Path(tempfile.mkdtemp(prefix="bpa-e2e-"))
    root.chmod(0o755)
    hosts_saved = (CONF_DIR / "hosts").read_bytes()
    try:
        program = _install_program(root, python)
        shares = _make_shares(root)
        slow = root / "slow-rsync"
        slow.write_text(SLOW_RSYNC)
        slow.chmod(0o755)
        home, key, askpass = operator_home(root)
        config = _write_config(root, home)
        with running_sshd("127.0.0.4", key) as sshd_a, running_sshd("127.0.0.5", key) as sshd_b:
            (home / "known_hosts").write_text(sshd_a.known_hosts_line() + sshd_b.known_hosts_line())
            subprocess.run(["chown", "-R", "backuppc:backuppc", str(home)], check=True)
            _clean_pc_dirs()
            lines = subprocess.run(
                as_backuppc(
                    str(program), "--config", str(config), "backuppc-config", "--user", "bpaclient"
                ),
                env=ENV,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout
            addresses = {CLIENT_A: "127.0.0.4", CLIENT_B: "127.0.0.5", CLIENT_SLOW: "127.0.0.4"}
            for client, address in addresses.items():
                # Only b is left to BackupPC's schedule (and so to backup all).
                extra = "" if client == CLIENT_B else "$Conf{BackupsDisable} = 1;\n"
                if client == CLIENT_SLOW:
                    extra += f"$Conf{{RsyncClientPath}} = '{slow}';\n"
                (CONF_DIR / f"{client}.pl").write_text(
                    _host_pl(client, address, shares[client], lines) + extra
                )
            (CONF_DIR / "hosts").write_text(
                "host dhcp user moreUsers\n" + "".join(f"{c} 0 backuppc\n" for c in CLIENTS)
            )
            with serving(root, program, config, home) as offset:
                yield Site(
                    root, program, config, home, key, askpass, {"a": sshd_a, "b": sshd_b}, offset
                )
    finally:
        kill_backuppc_leftovers(root)
        kill_user_processes("bpaclient")
        (CONF_DIR / "hosts").write_bytes(hosts_saved)
        _clean_pc_dirs()
        shutil.rmtree(root, ignore_errors=True)


def _log_since(offset: int) -> str:
    """BackupPC's LOG from ``offset`` on ("" before a first server start creates it)."""
    try:
        with LOG.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def operator_home(root: Path, passphrase: str = PASSPHRASE) -> tuple[Path, Path, Path]:
    """The BackupPC user's home under ``root``: (home, a key with ``passphrase``, its askpass)."""
    home = root / "home"
    home.mkdir(mode=0o700)
    key = make_key(home, "id_backup", passphrase)
    askpass = home / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho '{passphrase}'\n")
    askpass.chmod(0o700)
    return home, key, askpass


def kill_backuppc_leftovers(root: Path, names: Iterable[str] = CLIENTS) -> None:
    """Masters, agents and dumps of user backuppc that name our tree or one of ``names``."""
    for pid, cmdline in user_processes("backuppc"):
        if str(root) in cmdline or any(name in cmdline for name in names):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _dump(client: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return run_bpc(str(BPC / "BackupPC_dump"), "-f", "-v", client, timeout=timeout)


def test_without_keys_a_dump_fails_fast_and_ssh_add_runs_it_through_backup_all(
    site: Site,
) -> None:
    """Runs first: keys are loaded for the first time here, which kicks backup all."""
    assert site.ssh_add("-D").returncode == 0
    started = time.monotonic()
    failed = _dump(CLIENT_B)
    elapsed = time.monotonic() - started
    assert elapsed < WAIT_SECONDS + 5, failed.stdout[-2000:]
    assert site.backups(CLIENT_B) == 0, failed.stdout[-4000:]
    assert site.backups(CLIENT_B) == 0
    xferlog = site.xferlog_bad(CLIENT_B)
    assert "backuppc-agent: SSH keys not loaded" in xferlog, xferlog[:3000]
    assert "backuppc-agent: SSH keys not loaded; run 'ssh-add' as backuppc" in xferlog
    assert "DumpPreUserCmd returned error status" in xferlog
    # Keys arrive: the supervisor tells BackupPC, whose own queue now dumps client b.
    assert site.ssh_add(str(site.key)).returncode == 0
    wait_for(lambda: "SSH keys loaded" in site.new_log(), timeout=15)
    wait_for(lambda: f"Finished full backup on {CLIENT_B}" in site.new_log(), timeout=60)
    assert f"Started full backup on {CLIENT_B}" in site.new_log()
    assert site.backups(CLIENT_B) == 1


def test_a_full_dump_of_three_shares_authenticates_exactly_once(site: Site) -> None:
    assert site.ssh_add(str(site.key)).returncode == 0
    before = site.servers["a"].accepted_publickey()
    done = _dump(CLIENT_A)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert site.backups(CLIENT_A) == 1
    assert site.servers["a"].accepted_publickey() - before == 1
    assert "backuppc-agent: ssh master for bpa-e2e-a is up" in done.stdout


def remote_jobs() -> list[tuple[int, str]]:
    return [p for p in user_processes("bpaclient") if "rsync" in p[1] or p[1].startswith("sleep")]


def start_slow_dump() -> subprocess.Popen[bytes]:
    """A full dump of the slow client, returned once its transfer is under way."""
    dump = subprocess.Popen(
        as_backuppc(str(BPC / "BackupPC_dump"), "-f", "-v", CLIENT_SLOW),
        env=ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_mid_transfer()
    except AssertionError:
        dump.kill()
        dump.wait()
        raise
    return dump


def wait_mid_transfer(timeout: float = 30) -> None:
    """Return once the slow client's rsync runs on the client and has sent for a while.

    A stop that comes earlier (in the pre-dump hook, or while rsync_bpc starts) is
    not the abort under test: BackupPC_dump then goes on to the whole transfer.
    """
    wait_for(lambda: any("--server" in cmd for _, cmd in remote_jobs()), timeout=timeout)
    time.sleep(1.5)  # mid-transfer: the share takes ~100 s at the client's bandwidth


def test_an_aborted_dump_ends_within_seconds_and_leaves_nothing_on_the_client(
    site: Site,
) -> None:
    assert site.ssh_add(str(site.key)).returncode == 0
    dump = start_slow_dump()
    try:
        dump.send_signal(signal.SIGINT)  # one SIGINT, as BackupPC's stop sends
        started = time.monotonic()
        dump.wait(timeout=30)
        assert time.monotonic() - started < 10
        wait_for(lambda: not remote_jobs(), timeout=5)
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    xferlog = site.xferlog_bad(CLIENT_SLOW)
    assert "aborted" in xferlog, xferlog[-3000:]
    assert "backuppc-agent: killed" in xferlog  # the post hook ran and found nothing left


def test_a_confirm_key_fails_the_dump_with_the_reason_not_permission_denied(
    site: Site,
) -> None:
    """ssh-add -c lists the key, but nobody can confirm: the pre-dump says so."""
    assert site.ssh_add("-D").returncode == 0
    try:
        assert site.ssh_add("-c", str(site.key)).returncode == 0
        failed = _dump(CLIENT_B)
        out = failed.stdout
        assert "backuppc-agent: SSH keys loaded but not usable" in out, out[-3000:]
        assert "confirmation required (added with ssh-add -c" in out
        assert "DumpPreUserCmd returned error status" in out
        assert "Permission denied" not in out
        assert "confirmation required" in site.xferlog_bad(CLIENT_B)
    finally:
        site.ssh_add("-D")
        site.ssh_add(str(site.key))
