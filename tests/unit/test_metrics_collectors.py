"""Collector parts against fixture procfs trees, read back through a fresh CollectorRegistry."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from backuppc_agent import __version__
from backuppc_agent.metrics.readiness import ReadinessPart
from backuppc_agent.metrics.scrape import Part, ScrapeErrors
from backuppc_agent.metrics.swap import SwapPart
from backuppc_agent.metrics.swapread import StatVfs
from backuppc_agent.state import Snapshot, State
from tests.helpers import statvfs_of
from tests.scrape import scrape

KIB = 1024


def snapshot(state: State = State.READY, agent_pid: int | None = 100) -> Snapshot:
    return Snapshot(
        state=state,
        reason="1 key loaded",
        socket="/s",
        agent_pid=agent_pid,
        identities=1,
        fingerprints=("SHA256:" + "A" * 43,),
        since=1_700_000_000.5,
        supervisor_pid=7,
        agent_restarts=2,
        agent_up=True,
    )


def swap_parts(root: Path) -> list[Part]:
    errors = ScrapeErrors()
    return [SwapPart(errors, name, root) for name in ("meminfo", "vmstat", "swaps", "pressure")]


def agent_part(root: Path, current: Snapshot | None) -> Part:
    return SwapPart(ScrapeErrors(), "ssh_agent_swap", root, snapshot=lambda: current)


def tmpfs_part(root: Path, filesystems: StatVfs) -> Part:
    return SwapPart(ScrapeErrors(), "tmpfs", root, statvfs=filesystems)


def test_system_swap_metrics_of_a_swapping_host(procfs_trees: Path) -> None:
    scraped = scrape(swap_parts(procfs_trees / "swapping"))
    assert scraped.value("swap_total_bytes") == 6291448 * KIB
    assert scraped.value("swap_free_bytes") == 5242872 * KIB
    assert scraped.value("swap_cached_bytes") == 2048 * KIB
    assert scraped.value("swap_in_pages_total") == 123456
    assert scraped.value("swap_out_pages_total") == 654321
    part = {"device": "/dev/vdb2", "type": "partition"}
    file = {"device": "/var/swap file", "type": "file"}
    assert scraped.value("swap_device_size_bytes", **part) == 4194300 * KIB
    assert scraped.value("swap_device_used_bytes", **part) == 1048576 * KIB
    assert scraped.value("swap_device_priority", **file) == 10
    assert scraped.value("memory_pressure_waiting_seconds_total") == pytest.approx(12.345678)
    assert scraped.value("memory_pressure_stalled_seconds_total") == pytest.approx(2.345678)
    assert set(scraped.errors.values()) == {0}


def test_a_host_without_swap_reports_zero_and_no_devices(procfs_trees: Path) -> None:
    scraped = scrape(swap_parts(procfs_trees / "captured"))
    assert scraped.value("swap_total_bytes") == 0
    assert scraped.value("swap_in_pages_total") == 0
    samples = [s for s in scraped.samples if "swap_device" in s.name]
    assert samples == []
    assert set(scraped.errors.values()) == {0}


def test_without_psi_the_pressure_metrics_are_absent_and_no_error(procfs_trees: Path) -> None:
    scraped = scrape(swap_parts(procfs_trees / "nopsi"))
    assert scraped.value("memory_pressure_waiting_seconds_total") is None
    assert scraped.value("swap_total_bytes") == 6291448 * KIB
    assert scraped.errors["pressure"] == 0


def test_malformed_lines_are_counted_and_the_rest_still_exported(procfs_trees: Path) -> None:
    scraped = scrape(swap_parts(procfs_trees / "malformed"))
    counts = scraped.errors
    # meminfo: the bad line, and the SwapFree it should have held; pressure alike (full)
    assert (counts["meminfo"], counts["vmstat"], counts["swaps"], counts["pressure"]) == (
        2,
        2,
        1,
        2,
    )
    assert scraped.value("swap_free_bytes") is None
    assert scraped.value("swap_total_bytes") == 6291448 * KIB
    assert scraped.value("swap_in_pages_total") == 123456
    assert scraped.value("memory_pressure_waiting_seconds_total") == pytest.approx(12.345678)
    assert scraped.value("scrape_errors_total", collector="meminfo") == 2


def test_a_missing_file_is_a_counted_error(tmp_path: Path) -> None:
    scraped = scrape(swap_parts(tmp_path))
    assert scraped.errors == {"meminfo": 1, "vmstat": 1, "swaps": 1, "pressure": 0}
    assert scraped.value("scrape_errors_total", collector="swaps") == 1


def test_top_swapping_processes_largest_first_ties_by_pid(procfs_trees: Path) -> None:
    errors = ScrapeErrors()
    part = SwapPart(errors, "processes", procfs_trees / "swapping", top=3)
    samples = [s for m in part.collect() for s in m.samples]
    assert [(s.labels["pid"], s.labels["comm"], s.value) for s in samples] == [
        ("200", "mysqld", 512000 * KIB),
        ("500", "python3", 4096 * KIB),
        ("300", "BackupPC", 2048 * KIB),
    ]
    # pid 600 vanished mid-scan: gone, not an error; kthreadd and a 0 kB sleep are left out
    assert errors.counts()["processes"] == 0


def test_the_processes_metric_never_asks_the_password_database(
    procfs_trees: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lookup(uid: int) -> None:  # a scrape of 5,000 processes must not pay for NSS
        raise AssertionError(f"looked up uid {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_lookup)
    scraped = scrape([SwapPart(ScrapeErrors(), "processes", procfs_trees / "swapping", top=3)])
    assert scraped.errors["processes"] == 0
    assert scraped.value("process_swap_bytes", pid="200", comm="mysqld") == 512000 * KIB


def test_processes_without_swap_are_not_listed(procfs_trees: Path) -> None:
    scraped = scrape([SwapPart(ScrapeErrors(), "processes", procfs_trees / "swapping", top=100)])
    assert scraped.value("process_swap_bytes", pid="400", comm="sleep") is None
    assert scraped.value("process_swap_bytes", pid="100", comm="ssh-agent") == 64 * KIB


def test_top_processes_zero_skips_the_scan(procfs_trees: Path) -> None:
    part = SwapPart(ScrapeErrors(), "processes", procfs_trees / "swapping", top=0)
    assert list(part.collect()) == []


def test_a_malformed_status_is_counted_and_the_scan_goes_on(procfs_trees: Path) -> None:
    scraped = scrape([SwapPart(ScrapeErrors(), "processes", procfs_trees / "malformed", top=10)])
    assert scraped.errors["processes"] == 1
    assert scraped.value("process_swap_bytes", pid="100", comm="ssh-agent") == 16 * KIB


def test_a_status_that_is_a_directory_is_counted(procfs_trees: Path, tmp_path: Path) -> None:
    root = shutil.copytree(procfs_trees / "swapping", tmp_path / "proc")
    (root / "500" / "status").unlink()
    (root / "500" / "status").mkdir()
    scraped = scrape([SwapPart(ScrapeErrors(), "processes", root, top=10)])
    assert scraped.errors["processes"] == 1
    assert scraped.value("process_swap_bytes", pid="200", comm="mysqld") == 512000 * KIB


def test_the_ssh_agents_own_swap_comes_from_the_snapshot_pid(procfs_trees: Path) -> None:
    root = procfs_trees / "swapping"
    scraped = scrape([agent_part(root, snapshot(agent_pid=100))])
    assert scraped.value("ssh_agent_swap_bytes") == 64 * KIB


@pytest.mark.parametrize("current", [None, snapshot(State.DOWN, agent_pid=None)])
def test_no_agent_no_agent_swap(procfs_trees: Path, current: Snapshot | None) -> None:
    scraped = scrape([agent_part(procfs_trees / "swapping", current)])
    assert scraped.value("ssh_agent_swap_bytes") is None
    assert scraped.errors["ssh_agent_swap"] == 0


def test_an_agent_pid_that_just_exited_is_not_an_error(procfs_trees: Path) -> None:
    scraped = scrape([agent_part(procfs_trees / "swapping", snapshot(agent_pid=600))])
    assert scraped.value("ssh_agent_swap_bytes") is None
    assert scraped.errors["ssh_agent_swap"] == 0


def test_a_malformed_agent_status_is_counted(procfs_trees: Path) -> None:
    scraped = scrape([agent_part(procfs_trees / "malformed", snapshot(agent_pid=200))])
    assert scraped.errors["ssh_agent_swap"] == 1


def test_tmpfs_size_and_use_per_mountpoint(procfs_trees: Path) -> None:
    filesystems = statvfs_of(
        {
            "/dev/shm": (1000, 250),
            "/sys/fs/cgroup": (10, 10),
            "/run": (500, 500),
            "/var/lib/backuppc tmp": (256, 0),
        }
    )
    scraped = scrape([tmpfs_part(procfs_trees / "swapping", filesystems)])
    assert scraped.value("tmpfs_size_bytes", mountpoint="/dev/shm") == 1000 * 4096
    assert scraped.value("tmpfs_used_bytes", mountpoint="/dev/shm") == 750 * 4096
    assert scraped.value("tmpfs_used_bytes", mountpoint="/var/lib/backuppc tmp") == 256 * 4096
    assert scraped.errors["tmpfs"] == 0


def test_a_tmpfs_mountpoint_that_cannot_be_statted_is_counted(procfs_trees: Path) -> None:
    filesystems = statvfs_of({"/dev/shm": (1000, 250)})
    scraped = scrape([tmpfs_part(procfs_trees / "swapping", filesystems)])
    assert scraped.errors["tmpfs"] == 3
    assert scraped.value("tmpfs_size_bytes", mountpoint="/dev/shm") == 1000 * 4096


def test_tmpfs_against_this_machines_real_mounts() -> None:
    mounts = Path("/proc/mounts").read_text().splitlines()
    points = [line.split()[1] for line in mounts if line.split()[2] == "tmpfs"]
    if "/dev/shm" not in points:
        pytest.skip("no tmpfs on /dev/shm here")
    scraped = scrape([SwapPart(ScrapeErrors(), "tmpfs", Path("/proc"))])
    real = os.statvfs("/dev/shm")
    assert scraped.value("tmpfs_size_bytes", mountpoint="/dev/shm") == real.f_blocks * real.f_frsize


def test_readiness_of_a_ready_agent() -> None:
    scraped = scrape([ReadinessPart(ScrapeErrors(), lambda: snapshot(State.READY))])
    assert scraped.value("ready") == 1
    assert scraped.value("state", state="ready") == 1
    assert scraped.value("state", state="waiting") == 0
    assert scraped.value("identities") == 1
    assert scraped.value("state_since_timestamp_seconds") == 1_700_000_000.5
    assert scraped.value("ssh_agent_up") == 1
    assert scraped.value("ssh_agent_restarts_total") == 2
    assert scraped.value("build_info", version=__version__) == 1


def test_readiness_of_a_waiting_agent_and_before_the_first_snapshot() -> None:
    scraped = scrape([ReadinessPart(ScrapeErrors(), lambda: snapshot(State.WAITING))])
    assert (scraped.value("ready"), scraped.value("state", state="waiting")) == (0, 1)
    scraped = scrape([ReadinessPart(ScrapeErrors(), lambda: None)])
    assert scraped.value("ready") == 0
    assert scraped.value("state", state="down") == 0
    assert scraped.value("identities") is None


class BrokenPart(Part):
    name = "broken"

    def collect(self) -> Iterable[Metric]:
        raise RuntimeError("bug in a collector")


def test_a_failing_collector_is_counted_and_does_not_break_the_scrape(
    procfs_trees: Path, caplog: pytest.LogCaptureFixture
) -> None:
    errors = ScrapeErrors()
    parts = [BrokenPart(errors), SwapPart(errors, "meminfo", procfs_trees / "swapping")]
    scraped = scrape(parts)
    assert scraped.value("swap_total_bytes") == 6291448 * KIB
    assert scraped.value("scrape_errors_total", collector="broken") == 1
    assert scraped.value("scrape_duration_seconds") is not None
    assert "bug in a collector" in caplog.text


def test_repeated_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    errors = ScrapeErrors(repeat_seconds=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            errors.record("meminfo", "cannot read /proc/meminfo")
        now[0] = 61.0
        errors.record("meminfo", "cannot read /proc/meminfo")
    assert errors.counts() == {"meminfo": 4}
    assert caplog.text.count("cannot read /proc/meminfo") == 2
