"""``backuppc-agent swap``: the swapping and the processes behind it, on one screen.

Read by the metrics' own reader (metrics.swapread), so screen and dashboard agree;
rates, as vmstat's si/so, come from two readings ``--interval`` apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pwd
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backuppc_agent import exitcodes, names, state
from backuppc_agent.cli.common import load_config
from backuppc_agent.doctor import swapcrypt
from backuppc_agent.metrics.swapread import MEMINFO, PROC, ProcessSwap, StatVfs, SwapReader, Tmpfs
from backuppc_agent.waits import pause

SYSFS = Path("/sys")
MAX_INTERVAL_SECONDS = 3600.0
MAX_COMMAND_CHARS = 200


@dataclass(frozen=True)
class Rates:
    """Per second over the interval: pages swapped in and out; PSI stall shares (0..1)."""

    interval_seconds: float
    in_pages: float | None
    out_pages: float | None
    page_bytes: int
    pressure_some: float | None
    pressure_full: float | None


@dataclass
class SwapReport:
    """Everything the swap command prints."""

    total_bytes: int | None = None
    free_bytes: int | None = None
    cached_bytes: int | None = None
    devices: list[swapcrypt.Encryption] = field(default_factory=list)
    rates: Rates | None = None
    processes: list[ProcessSwap] = field(default_factory=list)
    tmpfs: list[Tmpfs] = field(default_factory=list)
    agent_pid: int | None = None
    agent_swap_bytes: int | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sources:
    """Where to read, how to statvfs and wait: tests pass fixture trees and fakes."""

    procfs: Path = PROC
    sysfs: Path = SYSFS
    statvfs: StatVfs = os.statvfs
    sleep: Callable[[float], None] = pause


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval", metavar="S", type=float, default=1.0,
        help="seconds to measure swap-in/out and pressure over (default 1; 0: skip)",
    )  # fmt: skip
    parser.add_argument(
        "--top", metavar="N", type=int, default=None,
        help="how many processes to list (default: [swap] top_processes)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--procfs", metavar="DIR", default=str(PROC), help="procfs root")
    parser.add_argument("--sysfs", metavar="DIR", default=str(SYSFS), help="sysfs root")


def run(args: argparse.Namespace) -> int:
    """Gather once, print the screen (or JSON); 2 for a bad option, 9 without meminfo."""
    if not 0 <= args.interval <= MAX_INTERVAL_SECONDS or (args.top is not None and args.top < 0):
        print(f"backuppc-agent: swap: --interval must be 0..{MAX_INTERVAL_SECONDS:g} seconds "
              "and --top at least 0", file=sys.stderr)  # fmt: skip
        return exitcodes.USAGE
    config = load_config(args)
    snapshot = state.read(config.state.dir)
    sources = Sources(procfs=Path(args.procfs), sysfs=Path(args.sysfs))
    top = config.swap.top_processes if args.top is None else args.top
    report = gather(sources, args.interval, top, snapshot.agent_pid if snapshot else None)
    print(json.dumps(to_json(report), indent=2) if args.json else render(report))
    return exitcodes.FAILED if report.total_bytes is None else exitcodes.OK


def gather(sources: Sources, interval: float, top: int, agent_pid: int | None) -> SwapReport:
    """Read everything once (and vmstat/PSI again after ``interval`` seconds)."""
    report = SwapReport(agent_pid=agent_pid)
    read = SwapReader(sources.procfs, report.problems.append, sources.statvfs)
    first = _counters(read)
    meminfo = read.meminfo() or {}
    report.total_bytes, report.free_bytes, report.cached_bytes = map(meminfo.get, MEMINFO)
    report.devices = swapcrypt.check(sources.procfs, sources.sysfs, report.problems.append) or []
    report.processes = [_shown(sources.procfs, p) for p in read.processes(top) or ()]
    report.tmpfs = read.tmpfs() or []
    if agent_pid is not None:
        report.agent_swap_bytes = read.process_swap(agent_pid)
    if interval > 0:
        sources.sleep(interval)
        report.rates = _rates_between(first, _counters(read), interval)
    return report


def _counters(read: SwapReader) -> dict[str, float]:
    """vmstat's pswpin and pswpout and the PSI some and full totals, as read now."""
    return {**(read.vmstat() or {}), **(read.pressure() or {})}


def _rates_between(first: dict[str, float], second: dict[str, float], interval: float) -> Rates:
    """Per-second rates between two readings, as Prometheus's rate() would give them."""

    def per_second(key: str) -> float | None:
        if key not in first or key not in second:
            return None
        return max(second[key] - first[key], 0) / interval

    page_bytes = os.sysconf("SC_PAGE_SIZE")
    return Rates(interval, per_second("pswpin"), per_second("pswpout"), page_bytes,
                 per_second("some"), per_second("full"))  # fmt: skip


def _shown(root: Path, process: ProcessSwap) -> ProcessSwap:
    """``process`` with its owner and command line, for a person to end it by hand.

    The command line is cut short, NULs as spaces; a kernel thread has none: [comm].
    """
    try:
        raw = (root / str(process.pid) / "cmdline").read_bytes()[: MAX_COMMAND_CHARS * 4]
    except OSError:
        raw = b""
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    command = names.visible(text, MAX_COMMAND_CHARS) if text else f"[{process.comm}]"
    return dataclasses.replace(process, user=_user(process.uid), command=command)


def _user(uid: int | None) -> str:
    """The name of ``uid`` where the password database knows it, else the number ("?": none)."""
    if uid is None:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid the password database does not know
        return str(uid)


def to_json(report: SwapReport) -> dict[str, object]:
    """The documented JSON shape (dataclass fields, bytes and per-second values)."""
    data = dataclasses.asdict(report)
    data["devices"] = [{**dataclasses.asdict(v.area), "encrypted": v.encrypted, "why": v.why}
                       for v in report.devices]  # fmt: skip
    return data


def size(value: float | None) -> str:
    """Bytes for a person: 1.5 GiB, 512 KiB, 0 B."""
    if value is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def render(report: SwapReport) -> str:
    lines = _totals(report) + _rates(report) + _processes(report)
    lines += [f"tmpfs {mount.mountpoint}: {size(mount.used_bytes)} used of {size(mount.size_bytes)}"
              for mount in report.tmpfs]  # fmt: skip
    lines += _agent(report)
    lines += [f"problem: {problem}" for problem in report.problems[:10]]
    return "\n".join(lines)


def _totals(report: SwapReport) -> list[str]:
    if not report.total_bytes:
        return ["Swap: none configured" if report.total_bytes == 0 else "Swap: unknown"]
    used = report.total_bytes - (report.free_bytes or 0)
    share = f"{100 * used / report.total_bytes:.0f}%"
    cached = size(report.cached_bytes)
    lines = [f"Swap: {size(used)} used of {size(report.total_bytes)} ({share}), {cached} cached"]
    crypt = {True: "encrypted", False: "NOT encrypted", None: "encrypted: cannot tell"}
    for verdict in report.devices:
        dev = verdict.area
        lines.append(f"  {dev.device}  {dev.type}  {size(dev.used_bytes)} used of "
                     f"{size(dev.size_bytes)}  prio {dev.priority}  "
                     f"{crypt[verdict.encrypted]} ({verdict.why})")  # fmt: skip
    return lines


def _rates(report: SwapReport) -> list[str]:
    rates = report.rates
    if rates is None:
        return []

    def pages(value: float | None) -> str:
        return "?" if value is None else f"{value:.1f} pages/s ({size(value * rates.page_bytes)}/s)"

    line = f"Over {rates.interval_seconds:g} s: swap in {pages(rates.in_pages)}, "
    line += f"out {pages(rates.out_pages)}"
    if rates.pressure_some is None:
        return [line, "Memory pressure: not available (kernel without PSI)"]
    some, full = 100 * rates.pressure_some, 100 * (rates.pressure_full or 0)
    return [line, f"Memory pressure: some tasks stalled {some:.1f}% of the time, all {full:.1f}%"]


def _processes(report: SwapReport) -> list[str]:
    if not report.processes:
        return ["Processes in swap: none"]
    lines = ["Processes in swap (end one with: kill PID):", "      PID USER          SWAP  COMMAND"]
    for proc in report.processes:
        lines.append(f"  {proc.pid:>7} {proc.user[:10]:<10} {size(proc.swap_bytes):>10}  "
                     f"{proc.command[:80]}")  # fmt: skip
    return lines


def _agent(report: SwapReport) -> list[str]:
    if report.agent_pid is None:
        return ["ssh-agent: not running under the supervisor"]
    swapped = report.agent_swap_bytes
    warn = " (decrypted keys may be on the swap device)" if swapped else ""
    return [f"ssh-agent (pid {report.agent_pid}): {size(swapped)} in swap{warn}"]
