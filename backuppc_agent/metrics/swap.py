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
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from backuppc_agent.metrics.scrape import PREFIX, Part, ScrapeErrors, gauge
from backuppc_agent.metrics.swapread import StatVfs, SwapReader
from backuppc_agent.state import Snapshot

#: PSI line -> (metric name part, help)
_PSI_FAMILIES = {
    "some": ("waiting", "Time some tasks stalled on memory (PSI some)."),
    "full": ("stalled", "Time all tasks stalled on memory (PSI full)."),
}
SnapshotSource = Callable[[], Snapshot | None]


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
        info = self.read.meminfo()
        if info is None:
            return
        for suffix, value, doc in (
            ("total", info.total_bytes, "Swap space configured (meminfo SwapTotal)."),
            ("free", info.free_bytes, "Swap space unused (meminfo SwapFree)."),
            ("cached", info.cached_bytes, "Memory both in RAM and in swap (SwapCached)."),
        ):
            if value is not None:
                yield gauge(f"swap_{suffix}_bytes", doc, value)


class VmStatPart(SwapPart):
    """Pages swapped in and out since boot, from PROCFS/vmstat."""

    name = "vmstat"

    def collect(self) -> Iterator[Metric]:
        """Yield the swap-in and swap-out page counters."""
        stat = self.read.vmstat()
        if stat is None:
            return
        for direction, value in (("in", stat.pswpin), ("out", stat.pswpout)):
            if value is not None:
                yield CounterMetricFamily(
                    f"{PREFIX}swap_{direction}_pages_total",
                    f"Pages swapped {direction} since boot (vmstat pswp{direction}).",
                    value=value,
                )


def _labelled(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


class SwapsPart(SwapPart):
    """Each active swap area from PROCFS/swaps: size, use and priority."""

    name = "swaps"

    def collect(self) -> Iterator[Metric]:
        """Yield one sample per swap device in each of three gauges."""
        areas = self.read.swaps()
        if areas is None:
            return
        size = _labelled("swap_device_size_bytes", "Size of a swap area.", "device", "type")
        used = _labelled("swap_device_used_bytes", "Bytes in use on a swap area.", "device", "type")
        priority = _labelled("swap_device_priority", "Priority of a swap area.", "device", "type")
        for area in areas:
            values = [area.device, area.type]
            size.add_metric(values, area.size_bytes)
            used.add_metric(values, area.used_bytes)
            priority.add_metric(values, area.priority)
        yield from (size, used, priority)


class PressurePart(SwapPart):
    """Memory stall time from PROCFS/pressure/memory; absent on kernels without PSI."""

    name = "pressure"

    def collect(self) -> Iterator[Metric]:
        """Yield the waiting (some) and stalled (full) counters when PSI exists."""
        pressure = self.read.pressure()
        if pressure is None:
            return
        values = {"some": pressure.some_seconds, "full": pressure.full_seconds}
        for line, (kind, doc) in _PSI_FAMILIES.items():
            value = values[line]
            if value is not None:
                yield CounterMetricFamily(
                    f"{PREFIX}memory_pressure_{kind}_seconds_total", doc, value=value
                )


class ProcessSwapPart(SwapPart):
    """The ``top`` processes with the most memory in swap (VmSwap > 0)."""

    name = "processes"

    def __init__(self, errors: ScrapeErrors, root: Path, top: int) -> None:
        super().__init__(errors, root)
        self.top = top

    def collect(self) -> Iterator[Metric]:
        """Yield one gauge with a sample per swapping process, largest first."""
        if self.top <= 0:
            return
        top = self.read.processes(self.top)
        if top is None:
            return
        family = _labelled(
            "process_swap_bytes",
            "Memory of a process that sits in swap (VmSwap), for the largest ones.",
            "pid",
            "comm",
        )
        for process in top:
            family.add_metric([str(process.pid), process.comm], process.swap_bytes)
        yield family


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
        mounts = self.read.tmpfs()
        if mounts is None:
            return
        size = _labelled("tmpfs_size_bytes", "Size of a tmpfs mount.", "mountpoint")
        used = _labelled("tmpfs_used_bytes", "Bytes used on a tmpfs mount.", "mountpoint")
        for mount in mounts:
            size.add_metric([mount.mountpoint], mount.size_bytes)
            used.add_metric([mount.mountpoint], mount.used_bytes)
        yield from (size, used)
