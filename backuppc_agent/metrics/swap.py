"""System swap collectors: meminfo, vmstat, /proc/swaps and memory pressure (PSI).

Names follow node_exporter's (node_memory_SwapTotal_bytes, node_vmstat_pswpin,
node_pressure_memory_*), under our own prefix, so one dashboard can mix them.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from backuppc_agent.metrics import procfs
from backuppc_agent.metrics.scrape import PREFIX, Part, ScrapeErrors, gauge

#: errnos meaning "this kernel has no PSI" (not built in, or booted with psi=0)
NO_PSI_ERRNOS = frozenset({errno.ENOENT, errno.EOPNOTSUPP})
#: PSI line -> (metric name part, help)
_PSI_FAMILIES = {
    "some": ("waiting", "Time some tasks stalled on memory (PSI some)."),
    "full": ("stalled", "Time all tasks stalled on memory (PSI full)."),
}


class _Parsed(Protocol):
    @property
    def malformed(self) -> Sequence[str]:
        """The lines the parser could not read."""


_P = TypeVar("_P", bound=_Parsed)


class ProcfsPart(Part):
    """A part that reads files under a procfs root."""

    def __init__(self, errors: ScrapeErrors, root: Path) -> None:
        super().__init__(errors)
        self.root = root

    def read_parsed(self, name: str, parse: Callable[[str], _P]) -> tuple[Path, _P] | None:
        """Read and parse PROCFS/NAME, counting a failed read and each malformed line."""
        path = self.root / name
        text = self.read_text(path)
        if text is None:
            return None
        parsed = parse(text)
        self.report_malformed(path, parsed.malformed)
        return path, parsed


class MemInfoPart(ProcfsPart):
    """Swap size, free and cached bytes from PROCFS/meminfo."""

    name = "meminfo"

    def collect(self) -> Iterator[Metric]:
        """Yield the three swap gauges that meminfo has."""
        found = self.read_parsed("meminfo", procfs.parse_meminfo)
        if found is None:
            return
        path, info = found
        for suffix, value, doc in (
            ("total", info.total_bytes, "Swap space configured (meminfo SwapTotal)."),
            ("free", info.free_bytes, "Swap space unused (meminfo SwapFree)."),
            ("cached", info.cached_bytes, "Memory both in RAM and in swap (SwapCached)."),
        ):
            if value is None:
                self.fail(f"{path}: no Swap{suffix.capitalize()} line")
                continue
            yield gauge(f"swap_{suffix}_bytes", doc, value)


class VmStatPart(ProcfsPart):
    """Pages swapped in and out since boot, from PROCFS/vmstat."""

    name = "vmstat"

    def collect(self) -> Iterator[Metric]:
        """Yield the swap-in and swap-out page counters."""
        found = self.read_parsed("vmstat", procfs.parse_vmstat)
        if found is None:
            return
        path, stat = found
        for direction, value in (("in", stat.pswpin), ("out", stat.pswpout)):
            if value is None:
                self.fail(f"{path}: no pswp{direction} line")
                continue
            yield CounterMetricFamily(
                f"{PREFIX}swap_{direction}_pages_total",
                f"Pages swapped {direction} since boot (vmstat pswp{direction}).",
                value=value,
            )


class SwapsPart(ProcfsPart):
    """Each active swap area from PROCFS/swaps: size, use and priority."""

    name = "swaps"

    def collect(self) -> Iterator[Metric]:
        """Yield one sample per swap device in each of three gauges."""
        found = self.read_parsed("swaps", procfs.parse_swaps)
        if found is None:
            return
        _, swaps = found
        labels = ["device", "type"]
        size = GaugeMetricFamily(
            PREFIX + "swap_device_size_bytes", "Size of a swap area.", labels=labels
        )
        used = GaugeMetricFamily(
            PREFIX + "swap_device_used_bytes", "Bytes in use on a swap area.", labels=labels
        )
        priority = GaugeMetricFamily(
            PREFIX + "swap_device_priority", "Priority of a swap area.", labels=labels
        )
        for device in swaps.devices:
            values = [device.device, device.type]
            size.add_metric(values, device.size_bytes)
            used.add_metric(values, device.used_bytes)
            priority.add_metric(values, device.priority)
        yield from (size, used, priority)


class PressurePart(ProcfsPart):
    """Memory stall time from PROCFS/pressure/memory; absent on kernels without PSI."""

    name = "pressure"

    def collect(self) -> Iterator[Metric]:
        """Yield the waiting (some) and stalled (full) counters when PSI exists."""
        path = self.root / "pressure" / "memory"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            if err.errno not in NO_PSI_ERRNOS:
                self.fail(f"cannot read {path}: {err.strerror}")
            return
        if not text.strip():
            self.fail(f"cannot read {path}: it is empty")
            return
        pressure = procfs.parse_pressure(text)
        self.report_malformed(path, pressure.malformed)
        values = {"some": pressure.some_seconds, "full": pressure.full_seconds}
        for line, (kind, doc) in _PSI_FAMILIES.items():
            value = values[line]
            if value is None:
                # memory pressure has had both lines since PSI began (Linux 4.20)
                self.fail(f"{path}: no {line} line")
                continue
            yield CounterMetricFamily(
                f"{PREFIX}memory_pressure_{kind}_seconds_total", doc, value=value
            )
