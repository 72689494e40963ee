"""Where memory that should stay private can end up on disk: swapped processes and tmpfs.

The ssh-agent never mlocks its keys, so its VmSwap is exported on its own.
Its /proc/PID entries turn root-owned once it marks itself non-dumpable, but
/proc/PID/status stays world-readable, so an unprivileged exporter still sees it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from backuppc_agent.metrics import procfs
from backuppc_agent.metrics.processes import process_swap, scan_process_swap
from backuppc_agent.metrics.scrape import PREFIX, ScrapeErrors, gauge
from backuppc_agent.metrics.swap import ProcfsPart
from backuppc_agent.state import Snapshot

StatVfs = Callable[[str], os.statvfs_result]
SnapshotSource = Callable[[], Snapshot | None]


class ProcessSwapPart(ProcfsPart):
    """The ``top`` processes with the most memory in swap (VmSwap > 0)."""

    name = "processes"

    def __init__(self, errors: ScrapeErrors, root: Path, top: int) -> None:
        super().__init__(errors, root)
        self.top = top

    def collect(self) -> Iterator[Metric]:
        """Yield one gauge with a sample per swapping process, largest first."""
        if self.top <= 0:
            return
        try:
            scan = scan_process_swap(self.root, self.top)
        except OSError as err:
            self.fail(f"cannot list {self.root}: {err.strerror}")
            return
        for failure in scan.failures:
            self.fail(f"{self.root}/{failure}")
        family = GaugeMetricFamily(
            PREFIX + "process_swap_bytes",
            "Memory of a process that sits in swap (VmSwap), for the largest ones.",
            labels=["pid", "comm"],
        )
        for process in scan.top:
            family.add_metric([str(process.pid), process.comm], process.swap_bytes)
        yield family


class AgentSwapPart(ProcfsPart):
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
        pid = current.agent_pid
        try:
            swapped = process_swap(self.root, pid)
        except (OSError, ValueError) as err:
            detail = err.strerror if isinstance(err, OSError) else str(err)
            self.fail(f"cannot read {self.root}/{pid}/status: {detail}")
            return
        if swapped is not None:
            yield gauge(
                "ssh_agent_swap_bytes", "Memory of the ssh-agent that sits in swap.", swapped
            )


class TmpfsPart(ProcfsPart):
    """Size and use of every tmpfs mount (tmpfs pages can be swapped out too)."""

    name = "tmpfs"

    def __init__(self, errors: ScrapeErrors, root: Path, statvfs: StatVfs = os.statvfs) -> None:
        super().__init__(errors, root)
        # Mountpoints are paths in the exporter's own mount namespace; a test with
        # a fixture procfs passes a statvfs that knows the fixture's mountpoints.
        self.statvfs = statvfs

    def collect(self) -> Iterator[Metric]:
        """Yield size and used bytes per tmpfs mountpoint."""
        found = self.read_parsed("mounts", procfs.parse_mounts)
        if found is None:
            return
        _, mounts = found
        size = GaugeMetricFamily(
            PREFIX + "tmpfs_size_bytes", "Size of a tmpfs mount.", labels=["mountpoint"]
        )
        used = GaugeMetricFamily(
            PREFIX + "tmpfs_used_bytes", "Bytes used on a tmpfs mount.", labels=["mountpoint"]
        )
        for mountpoint in procfs.tmpfs_mountpoints(mounts):
            self._add(mountpoint, size, used)
        yield from (size, used)

    def _add(self, mountpoint: str, size: GaugeMetricFamily, used: GaugeMetricFamily) -> None:
        """Add one mountpoint's size and use, or count why it could not be statted."""
        try:
            stat = self.statvfs(mountpoint)
        except OSError as err:
            self.fail(f"cannot statvfs {mountpoint}: {err.strerror}")
            return
        size.add_metric([mountpoint], stat.f_blocks * stat.f_frsize)
        used.add_metric([mountpoint], (stat.f_blocks - stat.f_bfree) * stat.f_frsize)
