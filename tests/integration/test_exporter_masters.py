"""Master metrics against a real OpenSSH master (sshd on 127.0.0.41), over the mux protocol."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent.metrics.masters import MasterPart
from backuppc_agent.metrics.scrape import ScrapeErrors
from tests.helpers import make_key, private_dir, wait_for
from tests.scrape import Scraped, scrape
from tests.sshd import CLIENT_USER, needs_root, running_sshd

#: Outside 127.0.0.2-40, which the hook and master tests use.
ADDRESS = "127.0.0.41"


@pytest.fixture
def control_dir() -> Iterator[Path]:
    """A short 0700 directory: control paths must stay within 90 characters."""
    directory = Path(tempfile.mkdtemp(prefix="bpa-mux-"))
    try:
        yield private_dir(directory)
    finally:
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


def open_master(control: Path, key: Path) -> int:
    """Open a background ssh master on ``control``; return its pid (from the mux check)."""
    argv = [
        "ssh", "-o", "ControlMaster=yes", "-o", f"ControlPath={control}",
        "-o", "ControlPersist=60", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-i", str(key), "-N", "-f", "-E", f"{control}.log", f"{CLIENT_USER}@{ADDRESS}",
    ]  # fmt: skip
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=30)  # fmt: skip
    found = subprocess.run(["ssh", "-o", f"ControlPath={control}", "-O", "check", "x"],
                           capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
    return int(found.stderr.split("pid=")[1].split(")")[0])


def masters(control_dir: Path) -> Scraped:
    """One scrape of the master part alone."""
    return scrape([MasterPart(ScrapeErrors(), control_dir)])


def master_samples(scraped: Scraped) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for s in scraped.samples if "master" in s.name]


@needs_root
def test_a_live_master_and_a_dead_one(tmp_path: Path, control_dir: Path) -> None:
    key = make_key(private_dir(tmp_path / "keys"), "id_master", passphrase="")
    with running_sshd(ADDRESS, key):
        pid = open_master(control_dir / "client1", key)
        try:
            live = masters(control_dir)
            assert live.value("masters") == 1
            assert live.value("master_up", host="client1") == 1
            opened = (control_dir / "client1").stat().st_mtime
            assert live.value("master_opened_timestamp_seconds", host="client1") == opened
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not Path(f"/proc/{pid}").exists())
            dead = masters(control_dir)
        finally:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
    # SIGKILL leaves the socket behind: a dead master, shown as 0 and not counted live
    assert dead.value("masters") == 0
    assert dead.value("master_up", host="client1") == 0
    assert dead.value("master_opened_timestamp_seconds", host="client1") is None
    assert dead.errors == {"masters": 0}


def test_no_control_dir_yet_means_no_masters_and_no_error(tmp_path: Path) -> None:
    scraped = masters(tmp_path / "never-created")
    assert master_samples(scraped) == [("backuppc_agent_masters", {}, 0)]
    assert scraped.errors == {"masters": 0}


def test_a_stale_socket_nobody_listens_on_is_a_dead_master(control_dir: Path) -> None:
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(control_dir / "client2"))
    assert masters(control_dir).value("master_up", host="client2") == 0


def test_an_unreadable_control_dir_is_a_counted_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    scraped = masters(not_a_dir)
    assert master_samples(scraped) == []
    assert scraped.errors == {"masters": 1}
