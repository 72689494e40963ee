"""/proc/PID/status read fast: VmSwap, Name and the real uid (no prometheus_client).

VmSwap is a per-mm counter: never smaps_rollup, which walks every page table
(seconds on a busy host). Raw os.open/os.read keep 5,000 processes well under 0.1 s.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

KIB = 1024
STATUS_CHUNK_BYTES = 4096
_SWAP_TAG = b"\nVmSwap:"
_SWAP_LINE = re.compile(rb"\nVmSwap:[ \t]*(\d+) kB\n")
_THREADS_TAG = b"\nThreads:"


def parse_status_swap(data: bytes) -> int | None:
    """VmSwap of a /proc/PID/status text in bytes; None for a kernel thread or zombie.

    Those have no VmSwap line but, like every status, a Threads line after it. Raises
    ValueError on a malformed VmSwap line or a status with neither (cut short, or not one).
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


def _status_line(data: bytes, tag: bytes) -> bytes:
    """What follows ``tag`` (b"Name:") on its line of a /proc/PID/status text; b"" if absent."""
    at = (b"\n" + data).find(b"\n" + tag)
    return data[at + len(tag) :].split(b"\n", 1)[0] if at >= 0 else b""


def parse_status_name(data: bytes) -> str:
    """The Name: field (the comm) of a /proc/PID/status text; "" if absent."""
    return _status_line(data, b"Name:").strip().decode("utf-8", "replace")


def parse_status_uid(data: bytes) -> int | None:
    """The real uid (first Uid: field) of a /proc/PID/status text; None if absent or bad."""
    fields = _status_line(data, b"Uid:").split()
    return int(fields[0]) if fields and fields[0].isdigit() else None  # bytes: ASCII digits only


def read_status(root: Path, pid: int) -> bytes | None:
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
