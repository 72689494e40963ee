"""Pure parsers for the procfs files swap is read from: text in, dataclass out.

Each parser keeps what it could read and lists the lines it could not
(``malformed``), so one odd line is reported without hiding the rest. File
reading lives in ``swap.SwapReader`` and ``processes``; the metrics, the
``swap`` command and doctor's swap check all parse through here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KIB = 1024
USEC_PER_SECOND = 1_000_000
SWAPS_HEADER = "Filename"
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
_MEMINFO_KEYS = {"SwapTotal": "total", "SwapFree": "free", "SwapCached": "cached"}
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
class Mount:
    """One line of the mounts table, with octal escapes decoded."""

    device: str
    mountpoint: str
    fstype: str


@dataclass(frozen=True)
class Mounts:
    """The mounts table (/proc/mounts)."""

    entries: tuple[Mount, ...]
    malformed: tuple[str, ...] = ()


def _is_count(text: str) -> bool:
    """True for a plain decimal count: ASCII digits only (str.isdigit also takes '²')."""
    return text.isascii() and text.isdigit()


def unescape(field: str) -> str:
    """Decode the kernel's octal escapes (``\\040`` for a space) in a path field."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_meminfo(text: str) -> SwapMemInfo:
    """Parse the SwapTotal, SwapFree and SwapCached lines (``NAME: N kB``) into bytes."""
    found: dict[str, int] = {}
    malformed = []
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key not in _MEMINFO_KEYS:
            continue
        parts = rest.split()
        if len(parts) != 2 or parts[1] != "kB" or not _is_count(parts[0]):
            malformed.append(line)
            continue
        found[_MEMINFO_KEYS[key]] = int(parts[0]) * KIB
    return SwapMemInfo(found.get("total"), found.get("free"), found.get("cached"), tuple(malformed))


def parse_vmstat(text: str) -> SwapVmStat:
    """Parse the pswpin and pswpout counters (``NAME N``) of /proc/vmstat."""
    found: dict[str, int] = {}
    malformed = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("pswpin", "pswpout"):
            continue
        if len(parts) != 2 or not _is_count(parts[1]):
            malformed.append(line)
            continue
        found[parts[0]] = int(parts[1])
    return SwapVmStat(found.get("pswpin"), found.get("pswpout"), tuple(malformed))


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
    """Parse the mounts table: ``DEVICE MOUNTPOINT FSTYPE OPTIONS DUMP PASS``."""
    entries = []
    malformed = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            malformed.append(line)
            continue
        entries.append(Mount(unescape(parts[0]), unescape(parts[1]), parts[2]))
    return Mounts(tuple(entries), tuple(malformed))


def tmpfs_mountpoints(mounts: Mounts) -> tuple[str, ...]:
    """The distinct tmpfs mountpoints, in table order (a mount stacked twice counts once)."""
    seen: dict[str, None] = {}
    for entry in mounts.entries:
        if entry.fstype == "tmpfs":
            seen[entry.mountpoint] = None
    return tuple(seen)


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
