"""Swap's numbers from procfs for the exporter and the ``swap`` command (no prometheus_client).

Per-process swap is each /proc/PID/status's VmSwap (metrics.pidstatus). A process
that exits while we scan is gone, not an error.
"""

from __future__ import annotations

import errno
import heapq
import os
import re
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from backuppc_agent.metrics.pidstatus import (
    KIB,
    parse_status_name,
    parse_status_swap,
    parse_status_uid,
    read_status,
)

PROC = Path("/proc")
USEC_PER_SECOND = 1_000_000
SWAPS_HEADER = "Filename"
MEMINFO = ("SwapTotal", "SwapFree", "SwapCached")
VMSTAT = ("pswpin", "pswpout")
#: memory pressure has had both lines since PSI began (Linux 4.20)
PRESSURE = ("some", "full")
#: errnos meaning "this kernel has no PSI" (not built in, or booted with psi=0)
NO_PSI_ERRNOS = frozenset({errno.ENOENT, errno.EOPNOTSUPP})
StatVfs = Callable[[str], os.statvfs_result]
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
T = TypeVar("T", bound=Container[object])


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """What a parser read from a file, and the lines it could not read."""

    found: T
    malformed: tuple[str, ...] = ()


@dataclass(frozen=True)
class SwapArea:
    """One active swap area: a line of /proc/swaps, the path unescaped."""

    device: str
    type: str
    size_bytes: int
    used_bytes: int
    priority: int


@dataclass(frozen=True)
class Tmpfs:
    """A tmpfs mount's size and use (tmpfs pages can be swapped out too)."""

    mountpoint: str
    size_bytes: int
    used_bytes: int


@dataclass(frozen=True)
class ProcessSwap:
    """A process with memory in swap, of real ``uid`` (None if its status names none).

    ``user`` and ``command`` are filled only where a person reads them (the swap command).
    """

    pid: int
    uid: int | None
    comm: str
    swap_bytes: int
    user: str = ""
    command: str = ""


def _is_count(text: str | bytes) -> bool:
    """True for a plain decimal count: ASCII digits only (str.isdigit also takes '²')."""
    return text.isascii() and text.isdigit()


def unescape(field: str) -> str:
    """Decode the kernel's octal escapes (``\\040`` for a space) in a path field."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def _counters(
    text: str, names: Sequence[str], unit: tuple[str, ...] = ()
) -> Parsed[dict[str, int]]:
    """The counts of the ``NAME COUNT UNIT`` lines whose NAME is in ``names``."""
    found: dict[str, int] = {}
    malformed = []
    for line in text.splitlines():
        name, *rest = line.split() or [""]
        if name not in names:
            continue
        if len(rest) != 1 + len(unit) or tuple(rest[1:]) != unit or not _is_count(rest[0]):
            malformed.append(line)
            continue
        found[name] = int(rest[0])
    return Parsed(found, tuple(malformed))


def parse_meminfo(text: str) -> Parsed[dict[str, int]]:
    """The MEMINFO lines (``NAME: N kB``) of /proc/meminfo, in bytes."""
    kib = _counters(text, [name + ":" for name in MEMINFO], ("kB",))
    return Parsed({name[:-1]: value * KIB for name, value in kib.found.items()}, kib.malformed)


def parse_vmstat(text: str) -> Parsed[dict[str, int]]:
    """The pswpin and pswpout counters (``NAME N``) of /proc/vmstat, in pages."""
    return _counters(text, VMSTAT)


def parse_swaps(text: str) -> Parsed[tuple[SwapArea, ...]]:
    """The areas of /proc/swaps: a header, then ``Filename Type Size Used Priority`` (KiB).

    Without its header the file is cut short or not /proc/swaps: malformed, never "no swap".
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith(SWAPS_HEADER):
        return Parsed((), (lines[0] if lines else "",))
    areas = []
    malformed = []
    for line in filter(str.strip, lines[1:]):
        try:
            name, kind, size, used, priority = line.split()
            area = SwapArea(unescape(name), kind, int(size) * KIB, int(used) * KIB, int(priority))
        except ValueError:  # not five fields, or not numbers
            malformed.append(line)
        else:
            areas.append(area)
    return Parsed(tuple(areas), tuple(malformed))


def parse_pressure(text: str) -> Parsed[dict[str, float]]:
    """PSI lines ``some|full avg10=.. avg60=.. avg300=.. total=USEC``: the totals in seconds."""
    found: dict[str, float] = {}
    malformed = []
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        total = dict(field.partition("=")[::2] for field in rest.split()).get("total", "")
        if kind in PRESSURE and _is_count(total):
            found[kind] = int(total) / USEC_PER_SECOND
        elif line.strip():
            malformed.append(line)
    return Parsed(found, tuple(malformed))


def parse_mounts(text: str) -> Parsed[tuple[str, ...]]:
    """The distinct tmpfs mountpoints of a mounts table, in table order (stacked ones once)."""
    tmpfs: dict[str, None] = {}
    malformed = []
    for line in text.splitlines():
        parts = line.split()
        if parts and len(parts) < 4:
            malformed.append(line)
        elif parts and parts[2] == "tmpfs":
            tmpfs[unescape(parts[1])] = None
    return Parsed(tuple(tmpfs), tuple(malformed))


class SwapReader:
    """Reads swap's numbers under one procfs root; each failed read goes to ``fail``."""

    def __init__(
        self, root: Path, fail: Callable[[str], None], statvfs: StatVfs = os.statvfs
    ) -> None:
        self.root = root
        self.fail = fail
        # mountpoints are paths in our own mount namespace: a fixture procfs needs a fake
        self.statvfs = statvfs

    def _read(
        self,
        name: str,
        parse: Callable[[str], Parsed[T]],
        lines: Sequence[str] = (),
        quiet: frozenset[int] = frozenset(),
    ) -> T | None:
        """What ``parse`` found in ROOT/NAME; None if it cannot be read (``quiet`` errnos aside).

        Each malformed line, and each of ``lines`` it lacks, is reported.
        """
        path = self.root / name
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            if err.errno not in quiet:
                self.fail(f"cannot read {path}: {err.strerror}")
            return None
        if not text.strip():
            # no procfs file we read is ever empty: a broken mount or a stand-in file
            self.fail(f"cannot read {path}: it is empty")
            return None
        parsed = parse(text)
        for line in parsed.malformed:
            self.fail(f"{path}: malformed line {line!r}")
        for line in lines:
            if line not in parsed.found:
                self.fail(f"{path}: no {line} line")
        return parsed.found

    def meminfo(self) -> dict[str, int] | None:
        """SwapTotal, SwapFree and SwapCached in bytes."""
        return self._read("meminfo", parse_meminfo, MEMINFO)

    def vmstat(self) -> dict[str, int] | None:
        """Pages swapped in and out since boot (pswpin, pswpout)."""
        return self._read("vmstat", parse_vmstat, VMSTAT)

    def pressure(self) -> dict[str, float] | None:
        """Seconds some and all tasks stalled on memory; None (no problem) without PSI."""
        return self._read("pressure/memory", parse_pressure, PRESSURE, NO_PSI_ERRNOS)

    def swaps(self) -> tuple[SwapArea, ...] | None:
        """Every active swap area."""
        return self._read("swaps", parse_swaps)

    def processes(self, top: int) -> tuple[ProcessSwap, ...] | None:
        """The ``top`` processes with most memory in swap, largest first; None if unlisted."""
        try:
            with os.scandir(self.root) as entries:
                pids = [int(entry.name) for entry in entries if _is_count(entry.name)]
        except OSError as err:
            self.fail(f"cannot list {self.root}: {err.strerror}")
            return None
        swapping = []
        for pid in pids:
            swap, data = self._status(pid)
            if swap:
                swapping.append((swap, -pid, data))
        largest = heapq.nlargest(top, swapping, key=lambda item: item[:2])
        return tuple(
            ProcessSwap(-neg, parse_status_uid(data), parse_status_name(data), swap)
            for swap, neg, data in largest
        )

    def process_swap(self, pid: int) -> int | None:
        """VmSwap of one process; None if it is gone, has none, or cannot be read."""
        return self._status(pid)[0]

    def _status(self, pid: int) -> tuple[int | None, bytes]:
        """VmSwap and status text of PID; (None, b"") if it is gone or cannot be read."""
        try:
            data = read_status(self.root, pid)
            return (None, b"") if data is None else (parse_status_swap(data), data)
        except (OSError, ValueError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            self.fail(f"cannot read {self.root}/{pid}/status: {reason}")
            return None, b""

    def tmpfs(self) -> list[Tmpfs] | None:
        """Size and use of each tmpfs mountpoint that can be statted; None without mounts."""
        mountpoints = self._read("mounts", parse_mounts)
        if mountpoints is None:
            return None
        found = []
        for mountpoint in mountpoints:
            try:
                stat = self.statvfs(mountpoint)
            except OSError as err:
                self.fail(f"cannot statvfs {mountpoint}: {err.strerror}")
                continue
            size = stat.f_blocks * stat.f_frsize
            found.append(Tmpfs(mountpoint, size, size - stat.f_bfree * stat.f_frsize))
        return found
