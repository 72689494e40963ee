"""/proc files that are missing, empty, truncated or garbage: the scrape answers and counts it.

Each case copies the ``swapping`` fixture tree, breaks one file, and scrapes
every collector part through the real HTTP endpoint (MetricsServer, in-process).
The broken file's collector must count an error; every other collector must
still export its metrics with no error of its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.registry import CollectorRegistry

from backuppc_agent.config import from_mapping
from backuppc_agent.metrics.exporter import build_parts
from backuppc_agent.metrics.http import MetricsServer, make_app
from backuppc_agent.metrics.scrape import ScrapeCollector, ScrapeErrors
from backuppc_agent.state import Snapshot, State
from tests.scrape import Scraped, scrape

AGENT_PID = 200  # the fixture's biggest swapper stands in for the ssh-agent
#: file -> (collectors that read it, the line a read cut short stops inside)
FILES: dict[str, tuple[tuple[str, ...], str]] = {
    "meminfo": (("meminfo",), "SwapTotal:"),
    "vmstat": (("vmstat",), "pswpin "),
    "swaps": (("swaps",), "/dev/vdb2"),
    "pressure/memory": (("pressure",), "some "),
    "mounts": (("tmpfs",), "tmpfs /dev/shm"),
    f"{AGENT_PID}/status": (("processes", "ssh_agent_swap"), "VmSwap:"),
}
#: a metric each collector exports from the intact fixture
SIGNS = {
    "meminfo": "backuppc_agent_swap_total_bytes",
    "vmstat": "backuppc_agent_swap_in_pages_total",
    "swaps": "backuppc_agent_swap_device_size_bytes",
    "pressure": "backuppc_agent_memory_pressure_waiting_seconds_total",
    "tmpfs": "backuppc_agent_tmpfs_size_bytes",
    "processes": "backuppc_agent_process_swap_bytes",
    "ssh_agent_swap": "backuppc_agent_ssh_agent_swap_bytes",
    "readiness": "backuppc_agent_ready",
}
GARBAGE = b"\x00\xff\x7fELF\x02\x01\x01 not a proc file \xc3\x28\n\t\t=== 12 34 kB\n-\n"


def _missing(path: Path) -> None:
    path.unlink()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(anchor: str) -> Callable[[Path], None]:
    """Cut the file short inside the first line that holds a value we read."""

    def cut(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: data.index(anchor.encode()) + len(anchor) // 2])

    return cut


def _garbage(path: Path) -> None:
    path.write_bytes(GARBAGE)


def _statvfs(_path: str) -> os.statvfs_result:
    return os.statvfs_result((4096, 4096, 1000, 250, 250, 100, 50, 50, 0, 255))


def scrape_tree(root: Path, tmp_path: Path) -> Scraped:
    """One scrape of every part over HTTP, with ``root`` as /proc."""
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700, exist_ok=True)
    config = from_mapping(
        {
            "swap": {"top_processes": 5},
            "state": {"dir": str(state_dir)},
            "mux": {"control_dir": "/nonexistent/bpa-mux"},  # no masters, and short
        },
        "test",
        tmp_path,
    )
    snapshot = Snapshot(State.READY, "1 key loaded", "/x", AGENT_PID, 1, (), 0.0, 1)
    errors = ScrapeErrors()
    registry = CollectorRegistry()
    registry.register(
        ScrapeCollector(build_parts(config, errors, lambda: snapshot, _statvfs, root), errors)
    )
    server = MetricsServer("127.0.0.1:0", make_app(registry, lambda: (True, "ready")))
    try:
        host, port = server.address
        return scrape(f"http://{host}:{port}/metrics")
    finally:
        server.close()


def present(scraped: Scraped, collector: str) -> bool:
    return any(sample.name == SIGNS[collector] for sample in scraped.samples)


def test_the_intact_fixture_scrapes_without_errors(procfs_trees: Path, tmp_path: Path) -> None:
    scraped = scrape_tree(procfs_trees / "swapping", tmp_path)
    assert scraped.status == 200
    assert set(scraped.errors.values()) == {0}
    assert all(present(scraped, collector) for collector in SIGNS)


#: a missing pressure file is a kernel without PSI, a missing status a process that has
#: just exited: neither is an error (test_no_psi_and_a_vanished_process_are_not_errors)
CASES = [
    (name, variant)
    for name in sorted(FILES)
    for variant in ("missing", "empty", "truncated", "garbage")
    if (name, variant) not in {("pressure/memory", "missing"), (f"{AGENT_PID}/status", "missing")}
]


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_a_broken_proc_file_is_counted_and_the_rest_still_scraped(
    procfs_trees: Path, tmp_path: Path, name: str, variant: str
) -> None:
    collectors, anchor = FILES[name]
    root = Path(shutil.copytree(procfs_trees / "swapping", tmp_path / "proc"))
    breaker = {
        "missing": _missing,
        "empty": _empty,
        "truncated": _truncated(anchor),
        "garbage": _garbage,
    }[variant]
    breaker(root / name)
    scraped = scrape_tree(root, tmp_path)
    assert scraped.status == 200
    counted = scraped.errors
    for collector in collectors:
        assert counted[collector] >= 1, (collector, counted)
    assert {c: n for c, n in counted.items() if c not in collectors and n} == {}
    assert all(present(scraped, collector) for collector in set(SIGNS) - set(collectors))


def test_a_status_cut_before_its_vmswap_line_is_counted(procfs_trees: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(procfs_trees / "swapping", tmp_path / "proc"))
    status_file = root / str(AGENT_PID) / "status"
    data = status_file.read_bytes()
    status_file.write_bytes(data[: data.index(b"VmSwap:") - 40])  # a read cut short, mid-line
    counted = scrape_tree(root, tmp_path).errors
    assert counted["processes"] == 1
    assert counted["ssh_agent_swap"] == 1


def test_no_psi_and_a_vanished_process_are_not_errors(procfs_trees: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(procfs_trees / "swapping", tmp_path / "proc"))
    shutil.rmtree(root / "pressure")
    (root / "300" / "status").unlink()
    scraped = scrape_tree(root, tmp_path)
    assert set(scraped.errors.values()) == {0}
    assert not present(scraped, "pressure")
