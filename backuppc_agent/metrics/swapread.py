"""Swap's numbers from procfs, for the exporter and the ``swap`` command alike.

Two layers. The parsers are pure (text in, dataclass out): each keeps what it
could read and lists the lines it could not (``malformed``), so one odd line is
reported without hiding the rest. ``SwapReader`` reads the files under one root
(``/proc``; tests pass a fixture tree) through them and hands every failed read
or odd line to a callback: the metric parts count it as a scrape error, the
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
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

PROC = Path("/proc")
KIB = 1024
USEC_PER_SECOND = 1_000_000
STATUS_CHUNK_BYTES = 4096
SWAPS_HEADER = "Filename"
#: errnos meaning "this kernel has no PSI" (not built in, or booted with psi=0)
NO_PSI_ERRNOS = frozenset({errno.ENOENT, errno.EOPNOTSUPP})
StatVfs = Callable[[str], os.statvfs_result]
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
_SWAP_TAG = b"\nVmSwap:"
_SWAP_LINE = re.compile(rb"\nVmSwap:[ \t]*(\d+) kB\n")
_NAME_TAG = b"Name:"
_UID_TAG = b"\nUid:"
_THREADS_TAG = b"\nThreads:"


@dataclass(frozen=True)
class SwapMemInfo:
    """The swap lines of /proc/meminfo, in bytes; None when a line is absent."""

    total_bytes: int | None
    free_bytes: int | None
    cached_bytes: int | None
    malformed: tuple[str, ...] = ()


@dataclass(frozen=True)
class SwapVmStat:
    """Pages swapped in and out since boot (/proc/vmstat pswpin, pswpout)."""

    pswpin: int | None
    pswpout: int | None
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
class Swaps:
    """Every active swap area in /proc/swaps."""

    areas: tuple[SwapArea, ...]
    malformed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pressure:
    """Total stall time from /proc/pressure/memory (PSI), in seconds."""

    some_seconds: float | None
    full_seconds: float | None
    malformed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mounts:
    """The distinct tmpfs mountpoints of the mounts table (/proc/mounts), in table order."""

    tmpfs: tuple[str, ...]
    malformed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tmpfs:
    """A tmpfs mount's size and use (tmpfs pages can be swapped out too)."""

    mountpoint: str
    size_bytes: int
    used_bytes: int


@dataclass(frozen=True)
class ProcessSwap:
    """A process with memory in swap; ``user`` and ``command`` only where a person reads them."""

    pid: int
    user: str
    comm: str
    command: str
    swap_bytes: int


def _is_count(text: str) -> bool:
    """True for a plain decimal count: ASCII digits only (str.isdigit also takes '²')."""
    return text.isascii() and text.isdigit()


def unescape(field: str) -> str:
    """Decode the kernel's octal escapes (``\\040`` for a space) in a path field."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def _counters(
    text: str, names: Sequence[str], unit: tuple[str, ...] = ()
) -> tuple[dict[str, int], tuple[str, ...]]:
    """The ``NAME COUNT UNIT`` lines whose NAME is in ``names``: their counts, the malformed."""
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
    return found, tuple(malformed)


def parse_meminfo(text: str) -> SwapMemInfo:
    """Parse the SwapTotal, SwapFree and SwapCached lines (``NAME: N kB``) into bytes."""
    found, malformed = _counters(text, ("SwapTotal:", "SwapFree:", "SwapCached:"), ("kB",))
    total, free, cached = (
        None if kib is None else kib * KIB
        for kib in (found.get("SwapTotal:"), found.get("SwapFree:"), found.get("SwapCached:"))
    )
    return SwapMemInfo(total, free, cached, malformed)


def parse_vmstat(text: str) -> SwapVmStat:
    """Parse the pswpin and pswpout counters (``NAME N``) of /proc/vmstat."""
    found, malformed = _counters(text, ("pswpin", "pswpout"))
    return SwapVmStat(found.get("pswpin"), found.get("pswpout"), malformed)


def parse_swaps(text: str) -> Swaps:
    """Parse /proc/swaps: a header, then ``Filename Type Size Used Priority`` (KiB).

    A first line that is not the header is malformed: the file is cut short or
    is not /proc/swaps, and "no swap" must not be read into it.
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith(SWAPS_HEADER):
        return Swaps((), (lines[0] if lines else "",))
    areas = []
    malformed = []
    for line in lines[1:]:
        if not line.strip():
            continue
        area = _swap_area(line)
        if area is None:
            malformed.append(line)
        else:
            areas.append(area)
    return Swaps(tuple(areas), tuple(malformed))


def _swap_area(line: str) -> SwapArea | None:
    """One /proc/swaps line, or None if it does not have five valid fields."""
    parts = line.split()
    if len(parts) != 5:
        return None
    name, kind, size, used, priority = parts
    try:
        return SwapArea(unescape(name), kind, int(size) * KIB, int(used) * KIB, int(priority))
    except ValueError:
        return None


def parse_pressure(text: str) -> Pressure:
    """Parse PSI lines ``some|full avg10=.. avg60=.. avg300=.. total=USEC`` into seconds."""
    found: dict[str, float] = {}
    malformed = []
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind not in ("some", "full"):
            if line.strip():
                malformed.append(line)
            continue
        total = _psi_total(rest)
        if total is None:
            malformed.append(line)
        else:
            found[kind] = total / USEC_PER_SECOND
    return Pressure(found.get("some"), found.get("full"), tuple(malformed))


def _psi_total(fields: str) -> int | None:
    """The total= field (microseconds) of a PSI line, or None if absent or bad."""
    for field in fields.split():
        name, _, value = field.partition("=")
        if name == "total":
            return int(value) if _is_count(value) else None
    return None


def parse_mounts(text: str) -> Mounts:
    """Parse the mounts table (``DEVICE MOUNTPOINT FSTYPE OPTIONS DUMP PASS``) for tmpfs.

    A mountpoint stacked twice counts once.
    """
    tmpfs: dict[str, None] = {}
    malformed = []
    for line in text.splitlines():
        parts = line.split()
        if parts and len(parts) < 4:
            malformed.append(line)
        elif parts and parts[2] == "tmpfs":
            tmpfs[unescape(parts[1])] = None
    return Mounts(tuple(tmpfs), tuple(malformed))


def parse_status_swap(data: bytes) -> int | None:
    """VmSwap of a /proc/PID/status text in bytes; None if there is no VmSwap line.

    Kernel threads (and zombies) have no VmSwap line, but every status has a
    Threads line after it. Raises ValueError on a malformed VmSwap line, or on
    a status with neither (empty, cut short, or not a status file).
    """
    match = _SWAP_LINE.search(data)
    if match is not None:
        return int(match.group(1)) * KIB
    at = data.find(_SWAP_TAG)
    if at < 0:
        if _THREADS_TAG not in data:
            raise ValueError(f"status of {len(data)} bytes has no VmSwap or Threads line")
        return None
    end = data.find(b"\n", at + 1)
    raise ValueError(f"malformed VmSwap line: {data[at + 1 : end if end >= 0 else None]!r}")


def parse_status_name(data: bytes) -> str:
    """The Name: field (the comm) of a /proc/PID/status text; "" if absent."""
    if not data.startswith(_NAME_TAG):
        return ""
    end = data.find(b"\n")
    return data[len(_NAME_TAG) : end if end >= 0 else len(data)].strip().decode("utf-8", "replace")


def parse_status_uid(data: bytes) -> int | None:
    """The real uid (first Uid: field) of a /proc/PID/status text; None if absent or bad."""
    at = data.find(_UID_TAG)
    fields = data[at + len(_UID_TAG) :].split(b"\n", 1)[0].split() if at >= 0 else []
    return int(fields[0]) if fields and fields[0].isascii() and fields[0].isdigit() else None


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

    def meminfo(self) -> SwapMemInfo | None:
        """SwapTotal, SwapFree and SwapCached; a missing line is reported."""
        info = self._parsed("meminfo", parse_meminfo)
        if info is not None:
            self._missing("meminfo", {"SwapTotal": info.total_bytes, "SwapFree": info.free_bytes,
                                      "SwapCached": info.cached_bytes})  # fmt: skip
        return info

    def vmstat(self) -> SwapVmStat | None:
        """Pages swapped in and out since boot; a missing line is reported."""
        stat = self._parsed("vmstat", parse_vmstat)
        if stat is not None:
            self._missing("vmstat", {"pswpin": stat.pswpin, "pswpout": stat.pswpout})
        return stat

    def swaps(self) -> tuple[SwapArea, ...] | None:
        """Every active swap area; None if /proc/swaps cannot be read."""
        swaps = self._parsed("swaps", parse_swaps)
        return None if swaps is None else swaps.areas

    def pressure(self) -> Pressure | None:
        """Memory stall totals; None (and no problem) on a kernel without PSI."""
        pressure = self._parsed("pressure/memory", parse_pressure, NO_PSI_ERRNOS)
        if pressure is not None:
            # memory pressure has had both lines since PSI began (Linux 4.20)
            self._missing("pressure/memory", {"some": pressure.some_seconds,
                                              "full": pressure.full_seconds})  # fmt: skip
        return pressure

    def processes(self, top: int) -> tuple[ProcessSwap, ...] | None:
        """The ``top`` processes with most memory in swap, largest first; None if unlisted."""
        try:
            with os.scandir(self.root) as entries:
                pids = [entry.name for entry in entries if _is_count(entry.name)]
        except OSError as err:
            self.fail(f"cannot list {self.root}: {err.strerror}")
            return None
        swapping = []
        for pid in pids:
            try:
                data = read_status(str(self.root), pid)
                swap = None if data is None else parse_status_swap(data)
            except (OSError, ValueError) as err:
                self.fail(f"{self.root}/{pid}: {_describe(err)}")
                continue
            if swap and data:
                swapping.append((swap, -int(pid), data))
        largest = heapq.nlargest(top, swapping, key=lambda item: (item[0], item[1]))
        return tuple(
            ProcessSwap(-neg, "", parse_status_name(data), "", swap) for swap, neg, data in largest
        )

    def process_swap(self, pid: int) -> int | None:
        """VmSwap of one process; None if it is gone, has none, or cannot be read."""
        try:
            data = read_status(str(self.root), str(pid))
            return None if data is None else parse_status_swap(data)
        except (OSError, ValueError) as err:
            self.fail(f"cannot read {self.root}/{pid}/status: {_describe(err)}")
            return None

    def tmpfs(self) -> list[Tmpfs] | None:
        """Size and use of each tmpfs mountpoint that can be statted; None without mounts."""
        mounts = self._parsed("mounts", parse_mounts)
        if mounts is None:
            return None
        found = []
        for mountpoint in mounts.tmpfs:
            try:
                stat = self.statvfs(mountpoint)
            except OSError as err:
                self.fail(f"cannot statvfs {mountpoint}: {err.strerror}")
                continue
            size = stat.f_blocks * stat.f_frsize
            found.append(Tmpfs(mountpoint, size, size - stat.f_bfree * stat.f_frsize))
        return found
