"""The pure procfs parsers, on captured and hand-made files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backuppc_agent.metrics import swapread
from backuppc_agent.metrics.pidstatus import parse_status_name, parse_status_swap
from backuppc_agent.metrics.swapread import Parsed


def read(tree: Path, name: str) -> str:
    return (tree / name).read_text()


def test_meminfo_of_a_machine_without_swap_reads_as_zero(procfs_trees: Path) -> None:
    info = swapread.parse_meminfo(read(procfs_trees / "captured", "meminfo"))
    assert info == Parsed({"SwapTotal": 0, "SwapFree": 0, "SwapCached": 0})


def test_meminfo_swap_lines_are_converted_from_kib_to_bytes(procfs_trees: Path) -> None:
    info = swapread.parse_meminfo(read(procfs_trees / "swapping", "meminfo"))
    assert info.found == {
        "SwapTotal": 6291448 * 1024, "SwapFree": 5242872 * 1024, "SwapCached": 2048 * 1024
    }  # fmt: skip
    assert info.malformed == ()


def test_a_malformed_meminfo_line_is_reported_and_the_others_kept(procfs_trees: Path) -> None:
    info = swapread.parse_meminfo(read(procfs_trees / "malformed", "meminfo"))
    assert "SwapFree" not in info.found
    assert info.found["SwapTotal"] == 6291448 * 1024
    assert info.malformed == ("SwapFree:        lots kB",)


def test_vmstat_swap_counters(procfs_trees: Path) -> None:
    captured = swapread.parse_vmstat(read(procfs_trees / "captured", "vmstat"))
    assert captured == Parsed({"pswpin": 0, "pswpout": 0})
    swapping = swapread.parse_vmstat(read(procfs_trees / "swapping", "vmstat"))
    assert swapping == Parsed({"pswpin": 123456, "pswpout": 654321})
    bad = swapread.parse_vmstat(read(procfs_trees / "malformed", "vmstat"))
    assert bad == Parsed({"pswpin": 123456}, ("pswpout",))


def test_proc_swaps_without_swap_has_only_the_header(procfs_trees: Path) -> None:
    assert swapread.parse_swaps(read(procfs_trees / "captured", "swaps")) == Parsed(())


def test_proc_swaps_lists_a_partition_and_a_file_with_an_escaped_name(
    procfs_trees: Path,
) -> None:
    swaps = swapread.parse_swaps(read(procfs_trees / "swapping", "swaps"))
    assert swaps.found == (
        swapread.SwapArea("/dev/vdb2", "partition", 4194300 * 1024, 1048576 * 1024, -2),
        swapread.SwapArea("/var/swap file", "file", 2097148 * 1024, 0, 10),
    )
    assert swaps.malformed == ()


def test_a_short_proc_swaps_line_is_reported(procfs_trees: Path) -> None:
    swaps = swapread.parse_swaps(read(procfs_trees / "malformed", "swaps"))
    assert len(swaps.found) == 2
    assert swaps.malformed == ("/dev/vdc1 partition 1024",)


def test_psi_totals_are_converted_from_microseconds(procfs_trees: Path) -> None:
    pressure = swapread.parse_pressure(read(procfs_trees / "swapping", "pressure/memory"))
    assert pressure == Parsed({"some": 12.345678, "full": 2.345678})
    assert swapread.parse_pressure(read(procfs_trees / "captured", "pressure/memory")) == (
        Parsed({"some": 0.0, "full": 0.0})
    )


def test_a_negative_psi_total_is_malformed(procfs_trees: Path) -> None:
    pressure = swapread.parse_pressure(read(procfs_trees / "malformed", "pressure/memory"))
    assert pressure.found == {"some": pytest.approx(12.345678)}
    assert len(pressure.malformed) == 1


def test_tmpfs_mountpoints_are_unescaped_and_listed_once(procfs_trees: Path) -> None:
    mounts = swapread.parse_mounts(read(procfs_trees / "swapping", "mounts"))
    assert mounts.found == (
        "/dev/shm",
        "/sys/fs/cgroup",
        "/run",
        "/var/lib/backuppc tmp",
    )
    bad = swapread.parse_mounts(read(procfs_trees / "malformed", "mounts"))
    assert bad.malformed == ("garbage",)


def _kernel_escape(text: str) -> str:
    """How the kernel writes a path into /proc/mounts and /proc/swaps (mangle)."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in text)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=40))
def test_unescape_undoes_the_kernels_octal_escapes(path: str) -> None:
    assert swapread.unescape(_kernel_escape(path)) == path


def test_status_of_a_kernel_thread_has_no_vmswap(procfs_trees: Path) -> None:
    data = (procfs_trees / "captured" / "2" / "status").read_bytes()
    assert parse_status_swap(data) is None
    assert parse_status_name(data) == "kthreadd"


def test_status_vmswap_is_read_in_bytes(procfs_trees: Path) -> None:
    assert parse_status_swap((procfs_trees / "captured" / "16582" / "status").read_bytes()) == 0
    data = (procfs_trees / "swapping" / "200" / "status").read_bytes()
    assert parse_status_swap(data) == 512000 * 1024
    assert parse_status_name(data) == "mysqld"


def test_a_malformed_vmswap_line_raises(procfs_trees: Path) -> None:
    with pytest.raises(ValueError, match="VmSwap"):
        parse_status_swap((procfs_trees / "malformed" / "200" / "status").read_bytes())


@given(st.integers(min_value=0, max_value=2**50), st.sampled_from([" ", "\t", "\t  "]))
def test_any_vmswap_value_is_read_back(kib: int, gap: str) -> None:
    data = f"Name:\tx\nVmRSS:\t 1 kB\nVmSwap:{gap}{kib} kB\nThreads:\t1\n".encode()
    assert parse_status_swap(data) == kib * 1024
