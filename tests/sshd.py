"""Real OpenSSH servers on loopback for tests: one sshd per address, a client user.

Each server has its own directory (world-traversable, because sshd reads the
authorized_keys file as the client user), config file with every option spelled
out, ed25519 host key (0600), ``LogLevel VERBOSE`` log (``-E``) whose
"Accepted publickey" lines count authentications. Needs root (sshd binds port
22 on 127.0.0.x and switches to the client user); tests skip otherwise.

Addresses 127.0.0.2-127.0.0.40 are reserved for these servers; other test
modules pick distinct ones so runs in parallel never collide.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backuppc_agent.doctor.checks_agent import parse_ssh_version

SSHD = "/usr/sbin/sshd"
CLIENT_USER = "bpaclient"
START_SECONDS = 10.0
#: sshd 9.8 added PerSourcePenalties: each connection that never authenticates (our
#: readiness connects, ssh-keyscan's, the hostile tests' probes) earns its source a
#: penalty, and after about 15 sshd refuses 127.0.0.1 for a while. Older sshd refuses
#: the exemption keyword itself.
PENALTIES_SINCE = (9, 8)

# conftest skips tests marked root when not root; as root, a missing sshd fails them
# (`make test` installs openssh-server through tests/system-deps.sh).
needs_root = pytest.mark.root("needs root (sshd on loopback, a client user)")


def ensure_client_user(name: str = CLIENT_USER) -> str:
    """Create the client account (shell /bin/sh, unlocked for sshd without PAM) once."""
    if subprocess.run(["id", "-u", name], capture_output=True, check=False).returncode != 0:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", name],
            check=True,
            capture_output=True,
            timeout=30,
        )
    # A locked account ('!' in shadow) is refused by sshd when PAM is off.
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True, timeout=30)
    return name


@functools.cache
def sshd_version() -> tuple[int, int]:
    """(major, minor) of the installed sshd, from ``sshd -V``."""
    done = subprocess.run([SSHD, "-V"], capture_output=True, text=True, timeout=30, check=False)
    version = parse_ssh_version(done.stderr + done.stdout)
    assert version is not None, f"cannot parse `{SSHD} -V`: {done.stderr!r}"
    return version


def penalty_exemption() -> str:
    """The sshd_config line that exempts loopback from PerSourcePenalties, where sshd has them."""
    return "PerSourcePenaltyExemptList 127.0.0.0/8\n" if sshd_version() >= PENALTIES_SINCE else ""


def public_key_line(key: Path) -> str:
    """The one-line public key of a key pair (KEY.pub)."""
    return Path(f"{key}.pub").read_text().strip()


@dataclass
class Sshd:
    """One sshd on ADDRESS:22, logging to its own file."""

    address: str
    user: str = CLIENT_USER
    max_sessions: int = 64
    max_startups: str = "300:30:600"
    extra_config: str = ""  # more sshd_config lines (e.g. TrustedUserCAKeys)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bpa-sshd-")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def host_key(self) -> Path:
        return self.root / "host_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "authorized_keys"

    def authorize(self, *keys: Path) -> None:
        """Allow these key pairs to log in as the client user."""
        self.authorized_keys.write_text("".join(public_key_line(k) + "\n" for k in keys))
        self.authorized_keys.chmod(0o644)

    def _write_config(self) -> None:
        self.config.write_text(
            f"ListenAddress {self.address}:22\n"
            f"HostKey {self.host_key}\n"
            "PidFile none\n"
            "UsePAM no\n"
            "LogLevel VERBOSE\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "StrictModes no\n"  # the test directory lives under /tmp
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            f"AllowUsers {self.user}\n"
            "PermitRootLogin no\n"
            f"MaxSessions {self.max_sessions}\n"
            f"MaxStartups {self.max_startups}\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "X11Forwarding no\n"
            "AllowTcpForwarding no\n" + penalty_exemption() + self.extra_config
        )

    def start(self) -> Sshd:
        """Start sshd in the foreground (-D) and wait until it accepts connections."""
        self.root.chmod(0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        if not self.host_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)],
                check=True,
                timeout=30,
            )
        self.host_key.chmod(0o600)
        if not self.authorized_keys.exists():
            self.authorize()
        self._write_config()
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"sshd exited {self.proc.returncode}: {self.logtext()}")
            try:
                with socket.create_connection((self.address, 22), timeout=1):
                    return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"sshd on {self.address} did not listen: {self.logtext()}")

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def accepted_publickey(self) -> int:
        """How many public-key authentications this server has accepted so far."""
        return self.logtext().count("Accepted publickey")

    def known_hosts_line(self) -> str:
        """This server's host key as a known_hosts line (from ssh-keyscan)."""
        out = subprocess.run(
            ["ssh-keyscan", "-t", "ed25519", self.address],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        lines = [line for line in out.splitlines() if line and not line.startswith("#")]
        assert lines, f"ssh-keyscan found no key on {self.address}"
        return lines[0] + "\n"

    def stop(self) -> None:
        """Stop the listener and every process it forked (connections, remote commands).

        Only this server's: each connection runs in its own session, so they are
        found by parentage, never by name (another test's sshd may be running).
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        forked = descendants(self.proc.pid)
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in forked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from each process's parent in /proc/PID/stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def user_processes(user: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process of ``user``."""
    uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append((int(entry.name), cmdline.strip()))
    return found


def kill_user_processes(user: str, needle: str = "") -> None:
    """Clean-up: SIGKILL the user's processes whose command line contains ``needle``."""
    for pid, cmdline in user_processes(user):
        if needle in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@contextmanager
def running_sshd(address: str, *keys: Path, **options: object) -> Iterator[Sshd]:
    """An sshd on ``address`` that accepts ``keys``; stopped and removed afterwards."""
    ensure_client_user()
    server = Sshd(address, **options)  # type: ignore[arg-type]
    try:
        server.authorize(*keys)
        yield server.start()
    finally:
        server.stop()
        server.remove()
