"""Swap metrics: one part per SECTIONS entry, each reading through its own ``SwapReader``.

Names follow node_exporter's (node_memory_SwapTotal_bytes, node_vmstat_pswpin,
node_pressure_memory_*) under our own prefix, so one dashboard can mix them.
The ssh-agent never mlocks its keys, so its VmSwap is exported on its own: its
/proc/PID/status stays world-readable after it marks itself non-dumpable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from backuppc_agent.metrics.scrape import PREFIX, Part, ScrapeErrors, SnapshotSource, family, gauge
from backuppc_agent.metrics.swapread import StatVfs, SwapReader

#: (metric name after the prefix, key or field of what the reader returns, help)
Table = tuple[tuple[str, str, str], ...]
_MEMINFO: Table = (
    ("swap_total_bytes", "SwapTotal", "Swap space configured (meminfo SwapTotal)."),
    ("swap_free_bytes", "SwapFree", "Swap space unused (meminfo SwapFree)."),
    ("swap_cached_bytes", "SwapCached", "Memory both in RAM and in swap (SwapCached)."),
)
_VMSTAT: Table = (
    ("swap_in_pages_total", "pswpin", "Pages swapped in since boot (vmstat pswpin)."),
    ("swap_out_pages_total", "pswpout", "Pages swapped out since boot (vmstat pswpout)."),
)
_PRESSURE: Table = (
    ("memory_pressure_waiting_seconds_total", "some",
     "Time some tasks stalled on memory (PSI some)."),
    ("memory_pressure_stalled_seconds_total", "full",
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


def _scalars(
    kind: Callable[..., Metric], found: Mapping[str, float] | None, table: Table
) -> Iterator[Metric]:
    """One family of ``kind`` per row of ``table`` whose key ``found`` holds."""
    if found is None:
        return
    for name, key, doc in table:
        if key in found:
            yield kind(PREFIX + name, doc, value=found[key])


def _labelled(
    items: Sequence[object] | None, labels: tuple[str, ...], table: Table
) -> Iterator[Metric]:
    """One gauge per row of ``table``, a sample per item labelled by its fields ``labels``."""
    if items is None:
        return
    rows = [(item, [str(getattr(item, label)) for label in labels]) for item in items]
    for name, attr, doc in table:
        yield family(name, doc, labels, [(values, getattr(item, attr)) for item, values in rows])


def _agent_swap(part: SwapPart) -> Iterator[Metric]:
    """The supervised ssh-agent's VmSwap (decrypted keys may be paged out); none without one."""
    current = part.snapshot()
    if current is not None and current.agent_pid is not None:
        swapped = part.read.process_swap(current.agent_pid)
        if swapped is not None:
            yield gauge(
                "ssh_agent_swap_bytes", "Memory of the ssh-agent that sits in swap.", swapped
            )


class SwapPart(Part):
    """The SECTIONS entry ``name``, read under procfs ``root``; its failures count under it."""

    def __init__(
        self,
        errors: ScrapeErrors,
        name: str,
        root: Path,
        top: int = 0,
        snapshot: SnapshotSource = lambda: None,
        statvfs: StatVfs = os.statvfs,
    ) -> None:
        self.name = name
        super().__init__(errors)
        self.read = SwapReader(root, self.fail, statvfs)
        self.top = top
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        """Build this section's families afresh."""
        return SECTIONS[self.name](self)


#: Each part's name (its ``collector`` label) and what it exports, in exposition order.
SECTIONS: dict[str, Callable[[SwapPart], Iterable[Metric]]] = {
    "meminfo": lambda part: _scalars(GaugeMetricFamily, part.read.meminfo(), _MEMINFO),
    "vmstat": lambda part: _scalars(CounterMetricFamily, part.read.vmstat(), _VMSTAT),
    "swaps": lambda part: _labelled(part.read.swaps(), ("device", "type"), _SWAPS),
    # absent on kernels without PSI
    "pressure": lambda part: _scalars(CounterMetricFamily, part.read.pressure(), _PRESSURE),
    # top_processes = 0 skips the scan
    "processes": lambda part: _labelled(
        part.read.processes(part.top) if part.top > 0 else None, ("pid", "comm"), _PROCESSES
    ),
    "ssh_agent_swap": _agent_swap,
    "tmpfs": lambda part: _labelled(part.read.tmpfs(), ("mountpoint",), _TMPFS),
}
