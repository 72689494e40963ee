"""Fault-injection fixtures: a test bed of agent, sshd and config; dead networks; small disks.

Everything here starts real processes or changes real kernel state (mounts,
network namespaces) and undoes it in ``finally``. Addresses: sshds of the fault
tests use 127.0.0.61-127.0.0.120; the address that drops packets is routed into
a network namespace (198.18.0.0/15, the benchmarking range, never a real host).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.beds import Bed, bed_for
from tests.sshd import Sshd, descendants

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
NETNS = "bpa-faults"
#: The host side of the veth pair, the namespace side, and the routed range behind it.
VETH_HOST, VETH_NS = "bpa-flt0", "bpa-flt1"
LINK_HOST, LINK_NS = "198.18.61.1/30", "198.18.61.2/30"
DROPPED_RANGE, DROPPED_ADDRESS = "198.18.62.0/24", "198.18.62.1"


def fault_bed(
    agent: Path, sshd: Sshd | None, *, wait: float = 5, connect_timeout: int = 5
) -> contextlib.AbstractContextManager[Bed]:
    """A Bed for fault tests: short waits, masters persist 120 s; cleaned up after."""
    hooks = {"wait_seconds": wait, "connect_timeout_seconds": connect_timeout}
    return bed_for(agent, sshd, hooks=hooks, mux={"persist_seconds": 120})


def connection_processes(sshd: Sshd) -> list[int]:
    """Pids of the per-connection processes of ``sshd`` (its children and theirs)."""
    assert sshd.proc is not None
    return descendants(sshd.proc.pid)


def needs_netns() -> None:
    """Skip unless network namespaces can be made here (root, iproute2, kernel support)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    probe = ["ip", "netns", "add", NETNS + "-probe"]
    made = subprocess.run(probe, capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.decode().strip()}")
    subprocess.run(["ip", "netns", "del", NETNS + "-probe"], check=False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def dropped_address() -> Iterator[str]:
    """An address whose packets vanish: no RST, no ICMP, the TCP handshake never completes.

    DROPPED_RANGE is routed over a veth pair into a network namespace that does
    not forward; the kernel there drops what is not addressed to it, silently.
    Deleting the namespace removes the veth pair and with it the route.
    """
    needs_netns()
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
    _ip("netns", "add", NETNS)
    try:
        _ip("link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS)
        _ip("link", "set", VETH_NS, "netns", NETNS)
        _ip("addr", "add", LINK_HOST, "dev", VETH_HOST)
        _ip("link", "set", VETH_HOST, "up")
        _ip("-n", NETNS, "addr", "add", LINK_NS, "dev", VETH_NS)
        _ip("-n", NETNS, "link", "set", VETH_NS, "up")
        _ip("route", "add", DROPPED_RANGE, "via", LINK_NS.split("/", maxsplit=1)[0])
        yield DROPPED_ADDRESS
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True, check=False)


@contextlib.contextmanager
def silent_listener(address: str, port: int = 22) -> Iterator[list[socket.socket]]:
    """A TCP listener that accepts every connection and never sends a byte (no SSH banner)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, port))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield held
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(timeout=5)
        for conn in held:
            conn.close()


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``path`` (root only); lazily unmounted afterwards."""
    path.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        check=True,
        timeout=10,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=10)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last block; return the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0")
    finally:
        os.close(fd)
    return filler


def set_clock(clock_file: Path, offset: str) -> None:
    """Set the wall-clock offset of the processes run with ``faketime_env(clock_file)``.

    Written beside and renamed over: libfaketime re-reads the file at every time
    call, and a read between a plain write's truncate and its write finds an empty
    file, which libfaketime cannot parse and answers with exit(1) (seen under load).
    """
    fresh = clock_file.with_name(clock_file.name + ".new")
    fresh.write_text(f"{offset}\n")
    fresh.replace(clock_file)


def faketime_env(clock_file: Path) -> dict[str, str]:
    """The environment that runs a command under libfaketime, its offset read from a file.

    The wall clock follows ``clock_file`` ("+0", "-3600", "+86400": seconds of
    offset, set with ``set_clock``), re-read at every call; the monotonic clock stays real.
    """
    return dict(
        os.environ,
        LD_PRELOAD=str(LIBFAKETIME),
        FAKETIME_TIMESTAMP_FILE=str(clock_file),
        FAKETIME_NO_CACHE="1",
        DONT_FAKE_MONOTONIC="1",
    )


def timed(run: subprocess.Popen[str], timeout: float) -> tuple[str, str, float]:
    """Wait for ``run`` (started just now); return its stdout, stderr and seconds taken."""
    started = time.monotonic()
    out, err = run.communicate(timeout=timeout)
    return out, err, time.monotonic() - started
