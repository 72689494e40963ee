"""Shared test helpers: real keys, real ssh-add through askpass, a real supervisor."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backuppc_agent.events import HookSummary
from backuppc_agent.metrics.hooks import read_summary
from backuppc_agent.tomlwriter import toml_document

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLI = str(BIN / "backuppc-agent") if (BIN / "backuppc-agent").exists() else "backuppc-agent"
PASSPHRASE = "correct horse battery staple 4711"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(every)


def stored_summary(state_dir: Path) -> HookSummary:
    """The hook store's aggregates, read as the exporter reads them."""
    return read_summary(state_dir)


def listed_rows(stdout: str) -> list[str]:
    """``master list``'s rows; as root a first line says whose masters they are."""
    lines = stdout.splitlines()
    return lines[1:] if lines and lines[0].startswith("masters of: ") else lines


def proc_texts(pid: int) -> bytes:
    """argv and environment of a live process (NUL-separated, as the kernel keeps them)."""
    found = b""
    for name in ("cmdline", "environ"):
        try:
            found += Path(f"/proc/{pid}/{name}").read_bytes() + b"\n"
        except OSError:
            pass
    return found


def recording_wrapper(directory: Path, program: str) -> Path:
    """A PROGRAM in DIRECTORY/bin that records its argv and environment, then runs the real one.

    Put DIRECTORY/bin first on PATH; returns the record file.
    """
    bin_dir = private_dir(directory / "bin")
    record = directory / f"{program}.record"
    wrapper = bin_dir / program
    wrapper.write_text(
        f'#!/bin/sh\n{{ printf "%s\\n" "$*"; env; }} >> "{record}"\nexec /usr/bin/{program} "$@"\n'
    )
    wrapper.chmod(0o700)
    return record


def private_dir(path: Path) -> Path:
    """Create a 0700 directory (tests run under a private tmp_path)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def make_key(directory: Path, name: str = "id_ed25519", passphrase: str = PASSPHRASE) -> Path:
    """Generate a passphrase-protected ed25519 key with ssh-keygen; return its path."""
    key = directory / name
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            f"test-{name}",
            "-f",
            str(key),
        ],
        check=True,
        timeout=30,
    )
    return key


def key_fingerprint(key: Path) -> str:
    """SHA256 fingerprint of a key, from ssh-keygen -l."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{key}.pub"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return out.split()[1]


def askpass_helper(directory: Path, passphrase: str = PASSPHRASE) -> Path:
    """Write an SSH_ASKPASS helper that prints ``passphrase`` (test keys only)."""
    secret = directory / "askpass.secret"
    secret.write_text(passphrase + "\n")
    secret.chmod(0o600)
    helper = directory / "askpass.sh"
    helper.write_text(f"#!/bin/sh\ncat '{secret}'\n")
    helper.chmod(0o700)
    return helper


#: A real keyring backend that opens without a person: plain files under XDG_DATA_HOME.
KEYRING_BACKEND = "keyrings.alt.file.PlaintextKeyring"
_PLANT = "import keyring, sys; keyring.set_password('backuppc-agent', sys.argv[1], sys.argv[2])"


def keyring_env(root: Path) -> dict[str, str]:
    """Environment variables of a private file keyring under ``root`` (dirs made 0700)."""
    return {
        "PYTHON_KEYRING_BACKEND": KEYRING_BACKEND,
        "XDG_DATA_HOME": str(private_dir(root / "xdg-data")),
        "XDG_CONFIG_HOME": str(private_dir(root / "xdg-config")),
    }


def plant_passphrase(key: Path, secret: str, env: dict[str, str] | None = None) -> None:
    """Store ``secret`` as ``key``'s passphrase in the keyring, as `passphrase set` would."""
    argv = [sys.executable, "-c", _PLANT, str(key), secret]
    subprocess.run(argv, env=env, check=True, timeout=60)


def ssh_add(
    socket: Path, *args: str, askpass: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run the real ssh-add against ``socket``, with no tty; askpass answers prompts."""
    env = {"PATH": os.environ["PATH"], "SSH_AUTH_SOCK": str(socket)}
    if askpass is not None:
        env |= {"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
    return subprocess.run(
        ["ssh-add", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli(
    *args: str, config: Path | None = None, timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the backuppc-agent console script as a subprocess."""
    argv = [CLI, *(["--config", str(config)] if config else []), *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


Section = Mapping[str, object]


def merged(base: Mapping[str, Section], overrides: Mapping[str, Section]) -> dict[str, Section]:
    """``base`` with each section's keys updated from ``overrides`` (new sections added)."""
    out = {name: dict(keys) for name, keys in base.items()}
    for name, keys in overrides.items():
        out[name] = {**out.get(name, {}), **keys}
    return out


def write_config(path: Path, **sections: Section) -> Path:
    """Write a config file: ``write_config(p, agent={"socket": s}, hooks={...})``."""
    path.write_text(toml_document(sections))
    return path


@dataclass
class Setup:
    """Paths of one test installation."""

    root: Path
    socket: Path
    env_file: Path
    state_dir: Path
    config: Path

    def state(self) -> dict[str, Any] | None:
        """The published state file, or None."""
        try:
            return json.loads((self.state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def published(self, name: str) -> bool:
        """True when the published state is ``name``."""
        current = self.state()
        return bool(current and current["state"] == name)


def make_setup(root: Path, **sections: Section) -> Setup:
    """A private tree and a config pointing everything into it; ``sections`` add or override."""
    private_dir(root)
    sock_dir = private_dir(root / "ssh")
    state_dir = root / "state"
    base: dict[str, Section] = {
        "agent": {
            "socket": sock_dir / "agent.socket",
            "env_file": sock_dir / "agent.env",
            "poll_seconds": 0.05,
            # never the user's own ~/.ssh: a restore key there would change every test
            "restore_key": sock_dir / "id_restore_ed25519",
        },
        "state": {"dir": state_dir},
        "metrics": {"listen": ""},
    }
    config = write_config(root / "config.toml", **merged(base, sections))
    return Setup(root, sock_dir / "agent.socket", sock_dir / "agent.env", state_dir, config)


class Supervisor:
    """A real ``backuppc-agent run`` subprocess."""

    def __init__(
        self, setup: Setup, log: Path | None = None, run_args: tuple[str, ...] = ()
    ) -> None:
        self.setup = setup
        self.log = log or setup.root / f"supervisor-{time.monotonic_ns()}.log"
        self.run_args = run_args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_state: str | None = "waiting") -> Supervisor:
        """Start it and wait until it publishes ``wait_state``."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [CLI, "--config", str(self.setup.config), "run", *self.run_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        if wait_state:
            wait_for(lambda: self._published_by_me(wait_state), timeout=15)
        return self

    def _published_by_me(self, name: str) -> bool:
        current = self.setup.state()
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"supervisor exited {self.proc.returncode}: {self.logtext()}")
        return bool(
            current and current["state"] == name and current["supervisor_pid"] == self.proc.pid
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 10) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """TERM, then KILL; always safe to call."""
        stop_process(self.proc)


def stop_process(
    proc: subprocess.Popen[bytes] | None, grace_seconds: float = 10.0, group: bool = False
) -> None:
    """TERM ``proc``, wait ``grace_seconds``, then KILL it (its whole session if ``group``).

    Safe to call on None or on a process that has already ended.
    """
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()


def agent_pids_on(socket: Path) -> list[int]:
    """Pids of ssh-agent processes whose command line names ``socket``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"ssh-agent") and str(socket).encode() in cmdline:
            found.append(int(entry.name))
    return found


def kill_agents_on(socket: Path) -> None:
    """Clean-up: kill every ssh-agent bound to ``socket``."""
    for pid in agent_pids_on(socket):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def running(setup: Setup, wait_state: str | None = "waiting") -> Iterator[Supervisor]:
    """A supervisor for the duration of a with-block; everything stopped afterwards."""
    sup = Supervisor(setup)
    try:
        yield sup.start(wait_state)
    finally:
        sup.stop()
        kill_agents_on(setup.socket)


def which(name: str) -> str | None:
    return shutil.which(name)


@contextmanager
def agent_holding(key: Path | None = None, askpass: Path | None = None) -> Iterator[Path]:
    """A real ssh-agent on a private socket, holding ``key`` if given; killed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="bpa-agent-"))
    root.chmod(0o700)
    sock = root / "agent.sock"
    # stderr too: a probe that gave up under load makes the agent log a reset connection
    proc = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(sock.exists)
        if key is not None:
            assert ssh_add(sock, str(key), askpass=askpass).returncode == 0
        yield sock
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def statvfs_of(mounts: Mapping[str, tuple[int, int]]) -> Callable[[str], os.statvfs_result]:
    """A statvfs for fixture tmpfs mounts (path -> (blocks, free), 4 KiB blocks); others ENOENT."""

    def statvfs(path: str) -> os.statvfs_result:
        if path not in mounts:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        blocks, free = mounts[path]
        return os.statvfs_result((4096, 4096, blocks, free, free, 100, 50, 50, 0, 255))

    return statvfs
