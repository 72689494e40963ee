"""Hostile peers and tripwires for the hostile-input and security tests.

- ``listener``: a real unix listener on a path that treats every connection
  with one behaviour (silence, garbage, a huge length, a slow drip, ...);
- ``recording_program``: a stand-in for ssh (or any program) that records its
  argv and exits, so a test can assert that it never ran, or how;
- ``tree_snapshot``: every path under a directory, to assert nothing was created.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

Behaviour = Callable[[socket.socket], None]


@contextmanager
def listener(path: Path, behaviour: Behaviour, backlog: int = 16) -> Iterator[threading.Event]:
    """Serve ``path`` until the block ends; yields the event that stops the behaviours.

    Each connection runs in its own thread, so one slow peer never holds back
    the next; the socket path is removed afterwards.
    """
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(backlog)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                behaviour(conn)
            except OSError:
                pass

    def serve() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=handle, args=(conn,), daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield stop
    finally:
        stop.set()
        acceptor.join(timeout=5)
        server.close()
        for thread in threads:
            thread.join(timeout=5)
        if path.is_socket():
            path.unlink()


def _until_stopped(conn: socket.socket, seconds: float) -> None:
    """Hold the connection open without a word for ``seconds`` (or until the peer leaves)."""
    conn.settimeout(seconds)
    try:
        while conn.recv(4096):
            pass
    except TimeoutError:
        pass


def silent(conn: socket.socket) -> None:
    """Accept and never answer."""
    _until_stopped(conn, 5.0)


def garbage(conn: socket.socket) -> None:
    """Answer anything with text that is no protocol at all."""
    conn.sendall(b"SSH-2.0-OpenSSH_9.2 not what you asked for\r\n" * 8)
    _until_stopped(conn, 1.0)


def huge_length(conn: socket.socket) -> None:
    """Announce a 4 GiB frame, send a little, then wait."""
    conn.sendall(b"\xff\xff\xff\xff" + b"\x0c" * 64)
    _until_stopped(conn, 2.0)


def drip(total_announced: int, every: float = 0.1) -> Behaviour:
    """Announce a frame of ``total_announced`` bytes and send one byte every ``every`` s."""

    def behave(conn: socket.socket) -> None:
        conn.sendall(struct.pack(">I", total_announced))
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            conn.sendall(b"\x0c")
            time.sleep(every)

    return behave


def hangs_up_midway(conn: socket.socket) -> None:
    """Announce 100 bytes, send two, hang up."""
    conn.sendall(struct.pack(">I", 100) + b"\0\0")


HOSTILE_BEHAVIOURS: dict[str, Behaviour] = {
    "silent": silent,
    "garbage": garbage,
    "huge-length": huge_length,
    "hangs-up": hangs_up_midway,
    "drip": drip(60_000),
}


def recording_program(directory: Path, name: str = "ssh", exit_code: int = 255) -> Path:
    """A program that appends its argv (NUL-separated, one run per line) to NAME.runs.

    Returns the program's path; ``runs_of(program)`` reads what it recorded.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    program = directory / name
    record = directory / f"{name}.runs"
    program.write_text(
        "#!/bin/sh\n"
        f"for arg in \"$@\"; do printf '%s\\0' \"$arg\"; done >> '{record}'\n"
        f"echo >> '{record}'\n"
        f"echo '{name} (test stand-in): refusing to connect' >&2\n"
        f"exit {exit_code}\n"
    )
    program.chmod(0o700)
    return program


def runs_of(program: Path) -> list[list[str]]:
    """Every argv the recording program was run with (empty if it never ran)."""
    record = program.with_name(program.name + ".runs")
    if not record.exists():
        return []
    runs = []
    for line in record.read_bytes().split(b"\0\n"):
        if line.strip(b"\n"):
            runs.append([arg.decode(errors="replace") for arg in line.strip(b"\n").split(b"\0")])
    return runs


def tree_snapshot(root: Path) -> set[str]:
    """Every path under ``root`` (relative), to compare before and after a command."""
    found = set()
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found
