"""Nothing we ship sends ssh-agent SIGUSR1: from OpenSSH 10.0 it removes every loaded key.

The stop paths are run against a real process named ssh-agent that records each
signal it gets (ssh-agent itself cannot say which signals reached it); the files
that start, stop and reload services are searched for the signal by name or number.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent import proc
from backuppc_agent.agent.process import Agent
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
#: Everything that runs or tells a service manager what to send: the package, unit
#: files, init scripts, supervisord programs, Debian maintainer scripts.
SHIPPED = ("backuppc_agent", "initscripts", "supervisor.d", "debian")
USR1 = re.compile(r"USR1|\bkill\s+-(?:s\s+)?10\b|--signal\s+10\b|KillSignal\s*=\s*10\b")

RECORDER = """\
import os, signal, sys
record = sys.argv[1]
def note(signum, frame):
    with open(record, "a") as out:
        out.write(signal.Signals(signum).name + "\\n")
    if signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        sys.exit(2)  # as ssh-agent does
for signum in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}:
    signal.signal(signum, note)
open(record + ".ready", "w").close()
while True:
    signal.pause()
"""


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A process whose name is ssh-agent that writes down every signal it receives."""
    program = tmp_path / "ssh-agent"  # the kernel names a script after its file
    program.write_text(f"#!{sys.executable}\n{RECORDER}")
    program.chmod(0o755)
    record = tmp_path / "signals"
    child = proc.spawn((str(program), str(record)))
    try:
        wait_for(lambda: Path(f"{record}.ready").exists())
        yield child, record
    finally:
        proc.stop_child(child, grace=1.0)


def received(record: Path) -> list[str]:
    return record.read_text().split() if record.exists() else []


def test_stopping_our_agent_sends_term_and_never_usr1(
    recorder: tuple[subprocess.Popen[bytes], Path],
) -> None:
    child, record = recorder
    Agent(child.pid, child).stop()
    assert child.returncode == 2
    assert received(record) == ["SIGTERM"]


def test_stopping_an_adopted_agent_sends_term_and_never_usr1(
    recorder: tuple[subprocess.Popen[bytes], Path],
) -> None:
    child, record = recorder
    assert proc.process_name(child.pid) == "ssh-agent"
    Agent(child.pid).stop()
    wait_for(lambda: child.poll() is not None)
    assert received(record) == ["SIGTERM"]


def shipped_files() -> Iterator[Path]:
    for top in SHIPPED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path


def test_no_shipped_file_sends_sigusr1() -> None:
    files = list(shipped_files())
    assert any(path.name.endswith(".service") for path in files)  # the search reaches units
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if USR1.search(line)
    ]
    assert found == []
