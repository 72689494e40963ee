"""One test bed for the hook and master tests: a private tree and a config pointing into it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent.ssh.master import list_masters
from tests.helpers import Section, cli, merged, write_config
from tests.hostile_support import recording_program
from tests.sshd import Sshd


@dataclass
class Bed:
    """An installation under ``root``: its config, state dir root/state, control dir root/mux."""

    root: Path
    config: Path
    sshd: Sshd | None = None
    #: the ``[mux] ssh`` program, when the test gave one (a recording stand-in)
    ssh: Path | None = None

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def control_dir(self) -> Path:
        return self.root / "mux"

    @property
    def host(self) -> str:
        assert self.sshd is not None
        return f"bpaclient@{self.sshd.address}"

    def socket(self, client: str) -> Path:
        return self.control_dir / client

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``backuppc-agent --config CONFIG ARGS``."""
        return cli(*args, config=self.config, timeout=timeout)

    def hook(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("hook", *args, timeout=timeout)

    def pre_dump(self, client: str, host: str = "") -> subprocess.CompletedProcess[str]:
        return self.hook("pre-dump", "--client", client, "--host", host or self.host)

    def session(
        self, client: str, *command: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``master ssh CLIENT HOST COMMAND``: a session as rsync_bpc runs it."""
        return self.run("master", "ssh", client, self.host, *command, timeout=timeout)


def make_bed(
    root: Path,
    agent: Path,
    /,
    sshd: Sshd | None = None,
    ssh: Path | None = None,
    **sections: Section,
) -> Bed:
    """A Bed under ``root`` (0700) using the agent on ``agent``; ``sections`` add or override.

    With ``sshd``, ``root/known_hosts`` trusts it; with ``ssh``, that program is
    ``[mux] ssh``. Keep ``root`` short: control paths must stay under 90 characters.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    known = root / "known_hosts"
    known.write_text(sshd.known_hosts_line() if sshd else "")
    base: dict[str, Section] = {
        # never the user's own ~/.ssh: a restore key there would change every test
        "agent": {"socket": agent, "restore_key": root / "id_restore_ed25519"},
        "state": {"dir": root / "state"},
        "metrics": {"listen": ""},
        "mux": {"control_dir": root / "mux", "known_hosts": known},
    }
    if ssh is not None:
        base["mux"] = {**base["mux"], "ssh": ssh}
    config = write_config(root / "config.toml", **merged(base, sections))
    return Bed(root, config, sshd, ssh)


@contextlib.contextmanager
def bed_for(
    agent: Path, /, sshd: Sshd | None = None, recording_ssh: bool = False, **sections: Section
) -> Iterator[Bed]:
    """A Bed in a fresh temp dir; every master it started is killed and the dir removed after.

    With ``recording_ssh``, ``[mux] ssh`` is a stand-in that records its argv and fails.
    """
    root = Path(tempfile.mkdtemp(prefix="bpa-b-"))
    try:
        ssh = recording_program(root / "bin") if recording_ssh else None
        yield make_bed(root, agent, sshd, ssh, **sections)
    finally:
        kill_masters(root)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def kill_masters(root: Path) -> None:
    """SIGKILL every master under ``root``: listed ones, and any that left its socket."""
    for info in list_masters(root / "mux"):
        if info.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)
    for pid, cmdline in processes():
        if cmdline.startswith("ssh ") and f"ControlPath={root}/" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def processes() -> list[tuple[int, str]]:
    """(pid, command line) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        found.append((int(entry.name), raw.replace(b"\0", b" ").decode(errors="replace")))
    return found
