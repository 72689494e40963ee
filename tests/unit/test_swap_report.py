"""``backuppc-agent swap``: known answers on a fixture /proc, the same numbers as the metrics."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from prometheus_client.registry import CollectorRegistry

from backuppc_agent.cli import swap as swap_cli
from backuppc_agent.cli.swap import Sources, gather
from backuppc_agent.config import from_mapping
from backuppc_agent.metrics.exporter import build_parts
from backuppc_agent.metrics.scrape import ScrapeCollector, ScrapeErrors
from backuppc_agent.metrics.swap import SwapPart
from backuppc_agent.metrics.swapread import SwapReader, Tmpfs
from backuppc_agent.state import Snapshot, State
from tests.helpers import statvfs_of

KIB = 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
#: a uid no password database names (the largest is 2**32 - 2)
NO_SUCH_UID = 4_000_000_000
TMPFS = {"/dev/shm": (1000, 750), "/run": (500, 500), "/sys/fs/cgroup": (10, 10)}

fake_statvfs = statvfs_of(TMPFS)


@pytest.fixture
def tree(tmp_path: Path, procfs_trees: Path) -> Path:
    """The swapping fixture, with mysqld's command line and a sysfs for its swap partition."""
    root = tmp_path / "proc"
    shutil.copytree(procfs_trees / "swapping", root)
    (root / "200" / "cmdline").write_bytes(b"/usr/sbin/mysqld\0--user=mysql\0")
    sysfs = tmp_path / "sys"
    (sysfs / "class" / "block" / "vdb2").mkdir(parents=True)
    (sysfs / "block" / "vdb2").mkdir(parents=True)
    return root


def advance(root: Path, pages_in: int, some_usec: int) -> None:
    """What the kernel's counters did during the interval."""
    vmstat = (root / "vmstat").read_text()
    (root / "vmstat").write_text(vmstat.replace("pswpin 123456", f"pswpin {123456 + pages_in}"))
    psi = (root / "pressure" / "memory").read_text()
    (root / "pressure" / "memory").write_text(
        psi.replace("total=12345678", f"total={12345678 + some_usec}")
    )


def test_the_report_of_a_swapping_host_has_the_known_answers(tree: Path) -> None:
    sources = Sources(tree, tree.parent / "sys", fake_statvfs,
                      sleep=lambda seconds: advance(tree, 500, 1_000_000))  # fmt: skip
    report = gather(sources, 2.0, 3, agent_pid=100)
    assert (report.total_bytes, report.free_bytes) == (6291448 * KIB, 5242872 * KIB)
    assert report.cached_bytes == 2048 * KIB
    partition, swapfile = report.devices
    assert (partition.area.device, partition.area.type, partition.area.used_bytes) == (
        "/dev/vdb2", "partition", 1048576 * KIB,
    )  # fmt: skip
    assert partition.encrypted is False  # as doctor judges it: no dm-crypt below vdb2
    assert (swapfile.area.device, swapfile.encrypted) == ("/var/swap file", None)
    assert report.rates is not None
    assert report.rates.in_pages == 250.0  # 500 pages over 2 s
    assert report.rates.out_pages == 0.0
    assert report.rates.pressure_some == 0.5  # 1 s stalled in 2 s
    assert [(p.pid, p.user, p.command, p.swap_bytes) for p in report.processes] == [
        (200, "root", "/usr/sbin/mysqld --user=mysql", 512000 * KIB),
        (500, "root", "[python3]", 4096 * KIB),
        (300, "root", "[BackupPC]", 2048 * KIB),
    ]
    assert report.tmpfs == [
        Tmpfs("/dev/shm", 1000 * 4096, 250 * 4096),
        Tmpfs("/sys/fs/cgroup", 10 * 4096, 0),
        Tmpfs("/run", 500 * 4096, 0),
    ]
    assert report.agent_swap_bytes == 64 * KIB
    assert report.problems == ["cannot statvfs /var/lib/backuppc tmp: No such file or directory"]


def test_the_owner_comes_from_the_status_the_scan_read_and_an_unknown_uid_shows_as_a_number(
    tree: Path,
) -> None:
    status = tree / "300" / "status"
    status.write_text(status.read_text().replace("Uid:\t0\t", f"Uid:\t{NO_SUCH_UID}\t"))
    found = SwapReader(tree, pytest.fail).processes(3) or ()
    assert [(p.pid, p.uid) for p in found] == [(200, 0), (500, 0), (300, NO_SUCH_UID)]
    report = gather(Sources(tree, tree.parent / "sys", fake_statvfs), 0, 3, agent_pid=None)
    assert [p.user for p in report.processes] == ["root", "root", str(NO_SUCH_UID)]


def test_the_report_shows_the_same_numbers_as_the_metrics(tree: Path) -> None:
    report = gather(Sources(tree, tree.parent / "sys", fake_statvfs), 0, 3, agent_pid=None)
    errors = ScrapeErrors()
    registry = CollectorRegistry()
    parts = [SwapPart(errors, name, tree, top=3) for name in ("meminfo", "swaps", "processes")]
    registry.register(ScrapeCollector(parts, errors))
    metrics = {(s.name, s.labels.get("pid") or s.labels.get("device") or ""): s.value
               for family in registry.collect() for s in family.samples}  # fmt: skip
    assert metrics[("backuppc_agent_swap_total_bytes", "")] == report.total_bytes
    assert metrics[("backuppc_agent_swap_free_bytes", "")] == report.free_bytes
    for verdict in report.devices:
        assert metrics[("backuppc_agent_swap_device_used_bytes", verdict.area.device)] == (
            verdict.area.used_bytes
        )
    for proc in report.processes:
        assert metrics[("backuppc_agent_process_swap_bytes", str(proc.pid))] == proc.swap_bytes


def test_one_screen_names_the_top_swapper_and_how_to_end_it(tree: Path) -> None:
    sources = Sources(tree, tree.parent / "sys", fake_statvfs,
                      sleep=lambda seconds: advance(tree, 500, 0))  # fmt: skip
    screen = swap_cli.render(gather(sources, 1.0, 3, agent_pid=100))
    lines = screen.splitlines()
    assert len(lines) < 25
    assert lines[0] == "Swap: 1.0 GiB used of 6.0 GiB (17%), 2.0 MiB cached"
    assert "NOT encrypted" in lines[1]
    assert f"swap in 500.0 pages/s ({swap_cli.size(500 * PAGE)}/s)" in screen
    assert "kill PID" in screen
    assert any(line.split()[:3] == ["200", "root", "500.0"] and "/usr/sbin/mysqld" in line
               for line in lines)  # fmt: skip
    agent = "ssh-agent (pid 100): 64.0 KiB in swap (decrypted keys may be on the swap device)"
    assert agent in lines


def test_without_psi_or_swap_it_says_so(procfs_trees: Path) -> None:
    report = gather(Sources(procfs_trees / "nopsi", statvfs=fake_statvfs), 0.01, 2, None)
    assert report.rates is not None
    assert report.rates.pressure_some is None
    assert "not available (kernel without PSI)" in swap_cli.render(report)
    captured = gather(Sources(procfs_trees / "captured", statvfs=fake_statvfs), 0, 2, None)
    assert swap_cli.render(captured).splitlines()[0] == "Swap: none configured"


def test_the_report_names_every_problem_the_scrape_counts(procfs_trees: Path) -> None:
    root = procfs_trees / "malformed"
    report = gather(Sources(root, statvfs=fake_statvfs), 0, 3, agent_pid=200)
    config = from_mapping({"swap": {"top_processes": 3}}, "t", Path("/h"))
    errors = ScrapeErrors()
    agent = Snapshot(State.READY, "1 key loaded", "/s", 200, 1, (), 0.0, 1)
    parts = build_parts(config, errors, lambda: agent, fake_statvfs, root)
    swap_parts = [part for part in parts if isinstance(part, SwapPart)]
    assert len(swap_parts) == 7
    list(ScrapeCollector(swap_parts, errors).collect())
    assert report.problems
    assert len(report.problems) == sum(errors.counts().values())
