"""Swap metrics: system, devices, pressure, processes, tmpfs, each read through ``SwapReader``.

Each part reads through its own SwapReader, whose failures count under the
part's name. Names follow node_exporter's
(node_memory_SwapTotal_bytes, node_vmstat_pswpin, node_pressure_memory_*),
under our own prefix, so one dashboard can mix them.

The ssh-agent never mlocks its keys, so its VmSwap is exported on its own.
Its /proc/PID entries turn root-owned once it marks itself non-dumpable, but
/proc/PID/status stays world-readable, so an unprivileged exporter still sees it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from backuppc_agent.metrics.scrape import PREFIX, Part, ScrapeErrors, SnapshotSource, gauge
from backuppc_agent.metrics.swapread import StatVfs, SwapReader

#: (metric name after the prefix, field of what the reader returns, help)
Table = tuple[tuple[str, str, str], ...]
_MEMINFO: Table = (
    ("swap_total_bytes", "total_bytes", "Swap space configured (meminfo SwapTotal)."),
    ("swap_free_bytes", "free_bytes", "Swap space unused (meminfo SwapFree)."),
    ("swap_cached_bytes", "cached_bytes", "Memory both in RAM and in swap (SwapCached)."),
)
_VMSTAT: Table = (
    ("swap_in_pages_total", "pswpin", "Pages swapped in since boot (vmstat pswpin)."),
    ("swap_out_pages_total", "pswpout", "Pages swapped out since boot (vmstat pswpout)."),
)
_PRESSURE: Table = (
    ("memory_pressure_waiting_seconds_total", "some_seconds",
     "Time some tasks stalled on memory (PSI some)."),
    ("memory_pressure_stalled_seconds_total", "full_seconds",
     "Time all tasks stalled on memory (PSI full)."),
)  # fmt: skip
_SWAPS: Table = (
    ("swap_device_size_bytes", "size_bytes", "Size of a swap area."),
    ("swap_device_used_bytes", "used_bytes", "Bytes in use on a swap area."),
    ("swap_device_priority", "priority", "Priority of a swap area."),
)
_PROCESSES: Table = (
    ("process_swap_bytes", "swap_bytes",
     "Memory of a process that sits in swap (VmSwap), for the largest ones."),
)  # fmt: skip
_TMPFS: Table = (
    ("tmpfs_size_bytes", "size_bytes", "Size of a tmpfs mount."),
    ("tmpfs_used_bytes", "used_bytes", "Bytes used on a tmpfs mount."),
)


def _scalars(kind: Callable[..., Metric], found: object | None, table: Table) -> Iterator[Metric]:
    """One family of ``kind`` per row of ``table`` whose field of ``found`` has a value."""
    if found is None:
        return
    for name, attr, doc in table:
        value = getattr(found, attr)
        if value is not None:
            yield kind(PREFIX + name, doc, value=value)


def _labelled(
    items: Sequence[object] | None, labels: tuple[str, ...], table: Table
) -> Iterator[Metric]:
    """One gauge per row of ``table``, a sample per item labelled by its fields ``labels``."""
    if items is None:
        return
    for name, attr, doc in table:
        family = GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))
        for item in items:
            values = [str(getattr(item, label)) for label in labels]
            family.add_metric(values, getattr(item, attr))
        yield family


class SwapPart(Part):
    """A metrics part that reads through its own SwapReader (failures count under its name)."""

    def __init__(self, errors: ScrapeErrors, root: Path, statvfs: StatVfs = os.statvfs) -> None:
        super().__init__(errors)
        self.read = SwapReader(root, self.fail, statvfs)


class MemInfoPart(SwapPart):
    """Swap size, free and cached bytes from PROCFS/meminfo."""

    name = "meminfo"

    def collect(self) -> Iterator[Metric]:
        """Yield the three swap gauges that meminfo has."""
        yield from _scalars(GaugeMetricFamily, self.read.meminfo(), _MEMINFO)


class VmStatPart(SwapPart):
    """Pages swapped in and out since boot, from PROCFS/vmstat."""

    name = "vmstat"

    def collect(self) -> Iterator[Metric]:
        """Yield the swap-in and swap-out page counters."""
        yield from _scalars(CounterMetricFamily, self.read.vmstat(), _VMSTAT)


class SwapsPart(SwapPart):
    """Each active swap area from PROCFS/swaps: size, use and priority."""

    name = "swaps"

    def collect(self) -> Iterator[Metric]:
        """Yield one sample per swap device in each of three gauges."""
        yield from _labelled(self.read.swaps(), ("device", "type"), _SWAPS)


class PressurePart(SwapPart):
    """Memory stall time from PROCFS/pressure/memory; absent on kernels without PSI."""

    name = "pressure"

    def collect(self) -> Iterator[Metric]:
        """Yield the waiting (some) and stalled (full) counters when PSI exists."""
        yield from _scalars(CounterMetricFamily, self.read.pressure(), _PRESSURE)


class ProcessSwapPart(SwapPart):
    """The ``top`` processes with the most memory in swap (VmSwap > 0)."""

    name = "processes"

    def __init__(self, errors: ScrapeErrors, root: Path, top: int) -> None:
        super().__init__(errors, root)
        self.top = top

    def collect(self) -> Iterator[Metric]:
        """Yield one gauge with a sample per swapping process, largest first."""
        if self.top > 0:
            yield from _labelled(self.read.processes(self.top), ("pid", "comm"), _PROCESSES)


class AgentSwapPart(SwapPart):
    """VmSwap of the supervised ssh-agent: decrypted keys may be paged out."""

    name = "ssh_agent_swap"

    def __init__(self, errors: ScrapeErrors, root: Path, snapshot: SnapshotSource) -> None:
        super().__init__(errors, root)
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Yield the agent's swapped bytes; nothing while no agent runs."""
        current = self.snapshot()
        if current is None or current.agent_pid is None:
            return
        swapped = self.read.process_swap(current.agent_pid)
        if swapped is not None:
            yield gauge(
                "ssh_agent_swap_bytes", "Memory of the ssh-agent that sits in swap.", swapped
            )


class TmpfsPart(SwapPart):
    """Size and use of every tmpfs mount (tmpfs pages can be swapped out too)."""

    name = "tmpfs"

    def collect(self) -> Iterator[Metric]:
        """Yield size and used bytes per tmpfs mountpoint."""
        yield from _labelled(self.read.tmpfs(), ("mountpoint",), _TMPFS)
