"""Swap, read once for the exporter and the ``swap`` command: the one collector of its numbers.

``SwapReader`` reads the procfs files under one root (``/proc``; tests pass a
fixture tree) into the parsers' dataclasses and hands every failed read or
odd line to a callback: the metric parts count it as a scrape error, the
``swap`` command lists it. No prometheus_client here: the command stays light.

Per-process swap comes from /proc/PID/status VmSwap, the one hot loop of a
scrape. VmSwap is cheap (the kernel keeps a counter per mm); smaps_rollup
walks every page table and costs seconds on a busy host, so it is never read.
The loop works on bytes with raw os.open/os.read: 5,000 processes fit in well
under 0.1 s. A process that exits between the directory listing and the read
(ENOENT or ESRCH on open, ESRCH on read) has simply gone and is not an error.
"""

from __future__ import annotations

import errno
import heapq
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from backuppc_agent.metrics import procfs

PROC = Path("/proc")
STATUS_CHUNK_BYTES = 4096
#: errnos meaning "this kernel has no PSI" (not built in, or booted with psi=0)
NO_PSI_ERRNOS = frozenset({errno.ENOENT, errno.EOPNOTSUPP})
_SWAP_TAG = b"\nVmSwap:"
StatVfs = Callable[[str], os.statvfs_result]


@dataclass(frozen=True)
class ProcessSwap:
    """A process with memory in swap; ``user`` and ``command`` only where a person reads them."""

    pid: int
    user: str
    comm: str
    command: str
    swap_bytes: int


@dataclass(frozen=True)
class ProcessScan:
    """The outcome of one pass over every pid."""

    top: tuple[ProcessSwap, ...]
    failures: tuple[str, ...]


def read_status(root: str, pid: str) -> bytes | None:
    """Read ROOT/PID/status as bytes; None if the process is gone; raise other OSErrors."""
    try:
        fd = os.open(f"{root}/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):  # a dying task answers ESRCH
        return None
    try:
        data = os.read(fd, STATUS_CHUNK_BYTES)
        # A status with thousands of supplementary groups outgrows one chunk.
        while len(data) % STATUS_CHUNK_BYTES == 0 and data and _SWAP_TAG not in data:
            more = os.read(fd, STATUS_CHUNK_BYTES)
            if not more:
                break
            data += more
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    return data


def list_pids(root: str) -> list[str]:
    """The numeric entries of the procfs root; raise OSError if it cannot be listed."""
    with os.scandir(root) as entries:
        return [entry.name for entry in entries if entry.name.isascii() and entry.name.isdigit()]


def scan_process_swap(root: Path, limit: int) -> ProcessScan:
    """Read VmSwap of every process; return the ``limit`` largest non-zero ones.

    Raises OSError only if the procfs root itself cannot be listed.
    """
    swapping: list[tuple[int, int, bytes]] = []
    failures: list[str] = []
    for pid in list_pids(str(root)):
        try:
            data = read_status(str(root), pid)
            swap = None if data is None else procfs.parse_status_swap(data)
        except (OSError, ValueError) as err:
            failures.append(f"{pid}: {_describe(err)}")
            continue
        if swap and data:
            swapping.append((swap, -int(pid), data))
    top = heapq.nlargest(limit, swapping, key=lambda item: (item[0], item[1]))
    found = tuple(
        ProcessSwap(-neg, "", procfs.parse_status_name(data), "", swap) for swap, neg, data in top
    )
    return ProcessScan(found, tuple(failures))


def process_swap(root: Path, pid: int) -> int | None:
    """VmSwap of one process in bytes; None if it is gone or has none.

    Raises OSError (unreadable) or ValueError (malformed).
    """
    data = read_status(str(root), str(pid))
    return None if data is None else procfs.parse_status_swap(data)


def _describe(err: OSError | ValueError) -> str:
    """A short reason for a failed read or parse."""
    if isinstance(err, OSError):
        return err.strerror or type(err).__name__
    return str(err)


class _Parsed(Protocol):
    @property
    def malformed(self) -> Sequence[str]:
        """The lines the parser could not read."""


_P = TypeVar("_P", bound=_Parsed)


@dataclass(frozen=True)
class Tmpfs:
    """A tmpfs mount's size and use (tmpfs pages can be swapped out too)."""

    mountpoint: str
    size_bytes: int
    used_bytes: int


class SwapReader:
    """Reads swap's numbers under one procfs root; each failed read goes to ``fail``."""

    def __init__(
        self, root: Path, fail: Callable[[str], None], statvfs: StatVfs = os.statvfs
    ) -> None:
        self.root = root
        self.fail = fail
        # Mountpoints are paths in the reader's own mount namespace; a test with
        # a fixture procfs passes a statvfs that knows the fixture's mountpoints.
        self.statvfs = statvfs

    def _parsed(
        self, name: str, parse: Callable[[str], _P], quiet: frozenset[int] = frozenset()
    ) -> _P | None:
        """Read and parse ROOT/NAME, reporting a failed read (errnos in ``quiet`` aside)."""
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
        return parsed

    def _missing(self, name: str, lines: dict[str, object]) -> None:
        for line, value in lines.items():
            if value is None:
                self.fail(f"{self.root / name}: no {line} line")

    def meminfo(self) -> procfs.SwapMemInfo | None:
        """SwapTotal, SwapFree and SwapCached; a missing line is reported."""
        info = self._parsed("meminfo", procfs.parse_meminfo)
        if info is not None:
            self._missing("meminfo", {"SwapTotal": info.total_bytes, "SwapFree": info.free_bytes,
                                      "SwapCached": info.cached_bytes})  # fmt: skip
        return info

    def vmstat(self) -> procfs.SwapVmStat | None:
        """Pages swapped in and out since boot; a missing line is reported."""
        stat = self._parsed("vmstat", procfs.parse_vmstat)
        if stat is not None:
            self._missing("vmstat", {"pswpin": stat.pswpin, "pswpout": stat.pswpout})
        return stat

    def swaps(self) -> tuple[procfs.SwapArea, ...] | None:
        """Every active swap area; None if /proc/swaps cannot be read."""
        swaps = self._parsed("swaps", procfs.parse_swaps)
        return None if swaps is None else swaps.areas

    def pressure(self) -> procfs.Pressure | None:
        """Memory stall totals; None (and no problem) on a kernel without PSI."""
        pressure = self._parsed("pressure/memory", procfs.parse_pressure, NO_PSI_ERRNOS)
        if pressure is not None:
            # memory pressure has had both lines since PSI began (Linux 4.20)
            self._missing("pressure/memory", {"some": pressure.some_seconds,
                                              "full": pressure.full_seconds})  # fmt: skip
        return pressure

    def processes(self, top: int) -> tuple[ProcessSwap, ...] | None:
        """The ``top`` processes with most memory in swap, largest first; None if unlisted."""
        try:
            scan = scan_process_swap(self.root, top)
        except OSError as err:
            self.fail(f"cannot list {self.root}: {err.strerror}")
            return None
        for failure in scan.failures:
            self.fail(f"{self.root}/{failure}")
        return scan.top

    def process_swap(self, pid: int) -> int | None:
        """VmSwap of one process; None if it is gone, has none, or cannot be read."""
        try:
            return process_swap(self.root, pid)
        except (OSError, ValueError) as err:
            detail = err.strerror if isinstance(err, OSError) else str(err)
            self.fail(f"cannot read {self.root}/{pid}/status: {detail}")
            return None

    def tmpfs(self) -> list[Tmpfs] | None:
        """Size and use of each tmpfs mountpoint that can be statted; None without mounts."""
        mounts = self._parsed("mounts", procfs.parse_mounts)
        if mounts is None:
            return None
        found = []
        for mountpoint in procfs.tmpfs_mountpoints(mounts):
            try:
                stat = self.statvfs(mountpoint)
            except OSError as err:
                self.fail(f"cannot statvfs {mountpoint}: {err.strerror}")
                continue
            size = stat.f_blocks * stat.f_frsize
            found.append(Tmpfs(mountpoint, size, size - stat.f_bfree * stat.f_frsize))
        return found
