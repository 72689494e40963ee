"""``backuppc-agent swap``: the swapping and the processes behind it, on one screen.

Swap in use (total and per device, encrypted or not as ``doctor`` judges it),
pages swapped in and out per second over ``--interval`` (vmstat's si/so),
memory pressure stall, the processes with most memory in swap (pid, user,
command: to end one by hand), tmpfs use and the supervised ssh-agent's own
VmSwap. The same numbers as the metrics. Exit 0; 9 (FAILED) when
/proc/meminfo cannot be read at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from backuppc_agent import exitcodes, state
from backuppc_agent.cli.common import load_config
from backuppc_agent.swapreport import Sources, SwapReport, gather

MAX_INTERVAL_SECONDS = 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--interval, --top, --json; --procfs and --sysfs for other roots (tests: fixtures)."""
    parser.add_argument(
        "--interval", metavar="S", type=float, default=1.0,
        help="seconds to measure swap-in/out and pressure over (default 1; 0: skip)",
    )  # fmt: skip
    parser.add_argument(
        "--top", metavar="N", type=int, default=None,
        help="how many processes to list (default: [swap] top_processes)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--procfs", metavar="DIR", help="procfs root (default: [swap] procfs)")
    parser.add_argument("--sysfs", metavar="DIR", default="/sys", help="sysfs root")


def run(args: argparse.Namespace) -> int:
    """Gather once, print the screen (or JSON); 2 for a bad option, 9 without meminfo."""
    if not 0 <= args.interval <= MAX_INTERVAL_SECONDS or (args.top is not None and args.top < 0):
        print(f"backuppc-agent: swap: --interval must be 0..{MAX_INTERVAL_SECONDS:g} seconds "
              "and --top at least 0", file=sys.stderr)  # fmt: skip
        return exitcodes.USAGE
    config = load_config(args)
    snapshot = state.read(config.state.dir)
    sources = Sources(procfs=Path(args.procfs) if args.procfs else config.swap.procfs,
                      sysfs=Path(args.sysfs))  # fmt: skip
    top = config.swap.top_processes if args.top is None else args.top
    report = gather(sources, args.interval, top, snapshot.agent_pid if snapshot else None)
    print(json.dumps(to_json(report), indent=2) if args.json else render(report))
    return exitcodes.FAILED if report.total_bytes is None else exitcodes.OK


def to_json(report: SwapReport) -> dict[str, object]:
    """The documented JSON shape (dataclass fields, bytes and per-second values)."""
    data = dataclasses.asdict(report)
    data["tmpfs"] = [{"mountpoint": m, "size_bytes": s, "used_bytes": u}
                     for m, s, u in report.tmpfs]  # fmt: skip
    return data


def size(value: float | None) -> str:
    """Bytes for a person: 1.5 GiB, 512 KiB, 0 B."""
    if value is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "?"


def render(report: SwapReport) -> str:
    """The one screen."""
    lines = _totals(report) + _rates(report) + _processes(report) + _tmpfs(report)
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
    for dev in report.devices:
        crypt = {True: "encrypted", False: "NOT encrypted", None: "encrypted: cannot tell"}
        lines.append(f"  {dev.device}  {dev.type}  {size(dev.used_bytes)} used of "
                     f"{size(dev.size_bytes)}  prio {dev.priority}  "
                     f"{crypt[dev.encrypted]} ({dev.why})")  # fmt: skip
    return lines


def _rates(report: SwapReport) -> list[str]:
    rates = report.rates
    if rates is None:
        return []

    def pages(value: float | None) -> str:
        if value is None:
            return "?"
        return f"{value:.1f} pages/s ({size(value * rates.page_bytes)}/s)"

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


def _tmpfs(report: SwapReport) -> list[str]:
    return [f"tmpfs {mount}: {size(used)} used of {size(total)}"
            for mount, total, used in report.tmpfs]  # fmt: skip


def _agent(report: SwapReport) -> list[str]:
    if report.agent_pid is None:
        return ["ssh-agent: not running under the supervisor"]
    swapped = report.agent_swap_bytes
    warn = " (decrypted keys may be on the swap device)" if swapped else ""
    return [f"ssh-agent (pid {report.agent_pid}): {size(swapped)} in swap{warn}"]
