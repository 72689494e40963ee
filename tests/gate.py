"""Run the client gate (backuppc-agent-gate) as sshd would, with recording rsync/tar/logger.

sshd gives a forced command its own PATH, and the gate execs the rsync or tar it
finds there: a PATH directory of recording programs is the seam. Each records
its argv (NUL-separated) and the job marker and LC_ALL it was given, then exits
0, so a test sees exactly what the gate would have run.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT

GATE = ROOT / "backuppc_agent" / "install" / "files" / "client" / "backuppc-agent-gate"
RECORDED = ("rsync", "tar", "logger")
#: Bounded: a gate that hangs fails the test instead of the run.
RUN_SECONDS = 10.0
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def shells() -> list[tuple[str, tuple[str, ...]]]:
    """(name, argv prefix) of each POSIX sh here the gate must run under."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for name, program, args in (("dash", "dash", ()), ("bash-posix", "bash", ("--posix",)),
                                ("busybox", "busybox", ("sh",))):  # fmt: skip
        path = shutil.which(program)
        if path:
            found.append((name, (path, *args)))
    return found


SHIM = """#!/bin/sh
printf '%s\\0' "$@" > '{record}.argv'
printf '%s\\n' "job=${{BACKUPPC_AGENT_JOB-<unset>}}" "lc_all=${{LC_ALL-<unset>}}" > '{record}.env'
exit 0
"""

LOGGER = """#!/bin/sh
printf '%s\\0' "$@" >> '{record}.argv'
exit 0
"""


@dataclass(frozen=True)
class Shims:
    """A PATH directory of recording programs and where they record."""

    bin: Path
    records: Path

    def path(self) -> str:
        return f"{self.bin}:{SYSTEM_PATH}"

    def argv(self, program: str) -> list[str] | None:
        """What ``program`` was run with (None: not run)."""
        record = self.records / f"{program}.argv"
        if not record.exists():
            return None
        return [word.decode() for word in record.read_bytes().split(b"\0")[:-1]]

    def env(self, program: str) -> dict[str, str]:
        record = self.records / f"{program}.env"
        lines = record.read_text().splitlines() if record.exists() else []
        return dict(line.split("=", 1) for line in lines)

    def clear(self) -> None:
        for entry in self.records.iterdir():
            entry.unlink()


def make_shims(directory: Path) -> Shims:
    """Recording rsync, tar and logger in DIRECTORY/bin."""
    bin_dir = directory / "bin"
    records = directory / "records"
    bin_dir.mkdir(parents=True, exist_ok=True)
    records.mkdir(parents=True, exist_ok=True)
    for program in RECORDED:
        shim = bin_dir / program
        text = LOGGER if program == "logger" else SHIM
        shim.write_text(text.format(record=records / program))
        shim.chmod(0o755)
    return Shims(bin_dir, records)


@dataclass(frozen=True)
class GateRun:
    """One run of the gate: its status and output, and what it exec'd."""

    code: int
    stdout: str
    stderr: str
    ran: str | None  # "rsync", "tar" or None
    argv: list[str] | None
    job: str
    logged: list[str] | None


def run_gate(
    shims: Shims,
    shell: tuple[str, ...],
    command: str | None,
    mode: str = "backup",
    authkeys: str = "/nonexistent/authorized_keys",
    gate: Path = GATE,
    timeout: float = RUN_SECONDS,
) -> GateRun:
    """Run GATE MODE AUTHKEYS under SHELL with SSH_ORIGINAL_COMMAND=COMMAND (None: unset)."""
    shims.clear()
    env = {"PATH": shims.path(), "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    done = subprocess.run(
        [*shell, str(gate), mode, authkeys],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    ran = [p for p in ("rsync", "tar") if shims.argv(p) is not None]
    assert len(ran) <= 1, ran
    program = ran[0] if ran else None
    return GateRun(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
        program,
        shims.argv(program) if program else None,
        shims.env(program).get("job", "") if program else "",
        shims.argv("logger"),
    )


def environ_of(pid: int) -> dict[str, str]:
    """A live process's environment (from /proc)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )


def gate_copy(directory: Path) -> Path:
    """A copy of the gate (0755) in DIRECTORY, which is made world-traversable."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    copy = directory / GATE.name
    shutil.copyfile(GATE, copy)
    copy.chmod(0o755)
    return copy
