"""What ``backuppc-agent swap`` shows: the exporter's swap numbers, gathered once, with culprits.

The same parsers as the metrics (metrics.procfs, metrics.processes) and the
same encryption verdict as ``doctor`` (deploy.swapcheck), so the screen and
the dashboard agree. Rates are taken over an interval as vmstat's si/so are:
two readings of /proc/vmstat (and of the PSI totals) ``interval`` apart.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backuppc_agent.deploy import swapcheck
from backuppc_agent.metrics import procfs
from backuppc_agent.metrics.processes import process_swap, read_status, scan_process_swap
from backuppc_agent.waits import pause

StatVfs = Callable[[str], os.statvfs_result]
MAX_COMMAND_CHARS = 200
_UID_TAG = b"\nUid:"


@dataclass(frozen=True)
class Device:
    """One swap area, and whether doctor judges it encrypted (None: cannot tell)."""

    device: str
    type: str
    size_bytes: int
    used_bytes: int
    priority: int
    encrypted: bool | None
    why: str


@dataclass(frozen=True)
class Swapper:
    """A process with memory in swap."""

    pid: int
    user: str
    comm: str
    command: str
    swap_bytes: int


@dataclass(frozen=True)
class Rates:
    """Per second over the interval: pages swapped in and out, and PSI stall shares."""

    interval_seconds: float
    in_pages: float | None
    out_pages: float | None
    page_bytes: int
    #: share of the interval (0..1) some / all tasks stalled on memory; None without PSI
    pressure_some: float | None
    pressure_full: float | None


@dataclass
class SwapReport:
    """Everything the swap command prints."""

    total_bytes: int | None = None
    free_bytes: int | None = None
    cached_bytes: int | None = None
    devices: list[Device] = field(default_factory=list)
    rates: Rates | None = None
    processes: list[Swapper] = field(default_factory=list)
    #: (mountpoint, size, used) in bytes
    tmpfs: list[tuple[str, int, int]] = field(default_factory=list)
    agent_pid: int | None = None
    agent_swap_bytes: int | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sources:
    """Where to read (tests point these at fixture trees) and how to wait and statvfs."""

    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    statvfs: StatVfs = os.statvfs
    sleep: Callable[[float], None] = pause


def gather(sources: Sources, interval: float, top: int, agent_pid: int | None) -> SwapReport:
    """Read everything once (and vmstat/PSI again after ``interval`` seconds)."""
    report = SwapReport(agent_pid=agent_pid)
    first = _counters(sources.procfs, report)
    meminfo = _parsed(sources.procfs / "meminfo", procfs.parse_meminfo, report)
    if meminfo is not None:
        report.total_bytes, report.free_bytes = meminfo.total_bytes, meminfo.free_bytes
        report.cached_bytes = meminfo.cached_bytes
    report.devices = _devices(sources, report)
    report.processes = _swappers(sources.procfs, top, report)
    report.tmpfs = _tmpfs(sources, report)
    if agent_pid is not None:
        report.agent_swap_bytes = _agent_swap(sources.procfs, agent_pid, report)
    if interval > 0:
        sources.sleep(interval)
        report.rates = _rates(first, _counters(sources.procfs, report), interval)
    return report


def _parsed(path: Path, parse: Callable[[str], Any], report: SwapReport) -> Any:
    """Parse one procfs file; None (and a problem) if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        report.problems.append(f"cannot read {path}: {err.strerror}")
        return None
    parsed = parse(text)
    report.problems.extend(f"{path}: malformed line {line!r}" for line in parsed.malformed)
    return parsed


Counters = tuple[procfs.SwapVmStat | None, procfs.Pressure | None]


def _counters(root: Path, report: SwapReport) -> Counters:
    """vmstat's swap counters and the PSI totals (None without PSI: not a problem)."""
    vmstat = _parsed(root / "vmstat", procfs.parse_vmstat, report)
    psi = root / "pressure" / "memory"
    return vmstat, _parsed(psi, procfs.parse_pressure, report) if psi.exists() else None


def _rates(first: Counters, second: Counters, interval: float) -> Rates:
    """Per-second rates between two readings, as Prometheus's rate() would give them."""
    (vm1, psi1), (vm2, psi2) = first, second

    def per_second(name: str, one: object, two: object) -> float | None:
        a, b = getattr(one, name, None), getattr(two, name, None)
        return None if a is None or b is None else max(b - a, 0) / interval

    return Rates(
        interval,
        per_second("pswpin", vm1, vm2),
        per_second("pswpout", vm1, vm2),
        os.sysconf("SC_PAGE_SIZE"),
        per_second("some_seconds", psi1, psi2),
        per_second("full_seconds", psi1, psi2),
    )


def _devices(sources: Sources, report: SwapReport) -> list[Device]:
    swaps = _parsed(sources.procfs / "swaps", procfs.parse_swaps, report)
    if swaps is None:
        return []
    devices = []
    for dev in swaps.devices:
        area = swapcheck.SwapArea(dev.device, dev.type)
        verdict = swapcheck.judge(area, sources.procfs, sources.sysfs)
        devices.append(Device(dev.device, dev.type, dev.size_bytes, dev.used_bytes,
                              dev.priority, verdict.encrypted, verdict.why))  # fmt: skip
    return devices


def _swappers(root: Path, top: int, report: SwapReport) -> list[Swapper]:
    try:
        scan = scan_process_swap(root, top)
    except OSError as err:
        report.problems.append(f"cannot list {root}: {err.strerror}")
        return []
    report.problems.extend(f"{root}/{failure}" for failure in scan.failures)
    return [Swapper(p.pid, _user(root, p.pid), p.comm, _command(root, p.pid, p.comm), p.swap_bytes)
            for p in scan.top]  # fmt: skip


def _user(root: Path, pid: int) -> str:
    """The owner (real uid) of PID, by name where the password database knows it."""
    try:
        data = read_status(str(root), str(pid)) or b""
    except OSError:
        return "?"
    at = data.find(_UID_TAG)
    fields = data[at + len(_UID_TAG) :].split(b"\n", 1)[0].split() if at >= 0 else []
    if not fields or not fields[0].isdigit():
        return "?"
    try:
        return pwd.getpwuid(int(fields[0])).pw_name
    except KeyError:
        return fields[0].decode()


def _command(root: Path, pid: int, comm: str) -> str:
    """PID's command line (NULs as spaces, cut short), or [comm] for a kernel thread."""
    try:
        raw = (root / str(pid) / "cmdline").read_bytes()[: MAX_COMMAND_CHARS * 4]
    except OSError:
        raw = b""
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    text = "".join(char if char.isprintable() else "?" for char in text)
    return text[:MAX_COMMAND_CHARS] if text else f"[{comm}]"


def _tmpfs(sources: Sources, report: SwapReport) -> list[tuple[str, int, int]]:
    mounts = _parsed(sources.procfs / "mounts", procfs.parse_mounts, report)
    found = []
    for mountpoint in procfs.tmpfs_mountpoints(mounts) if mounts else ():
        try:
            stat = sources.statvfs(mountpoint)
        except OSError as err:
            report.problems.append(f"cannot statvfs {mountpoint}: {err.strerror}")
            continue
        size = stat.f_blocks * stat.f_frsize
        found.append((mountpoint, size, size - stat.f_bfree * stat.f_frsize))
    return found


def _agent_swap(root: Path, pid: int, report: SwapReport) -> int | None:
    try:
        return process_swap(root, pid)
    except (OSError, ValueError) as err:
        report.problems.append(f"ssh-agent (pid {pid}): {err}")
        return None
