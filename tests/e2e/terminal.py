"""A program on a real pseudo-terminal, driven like a person at a keyboard.

``su - backuppc`` must see a terminal to run an interactive login shell, and
ssh-add and trust read their answers from it.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import time
from collections.abc import Sequence

READ_BYTES = 4096
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM": "dumb",
    "LANG": "C.UTF-8",
}


class Terminal:
    """``argv`` on a new pty; ``expect`` waits for text, ``send`` types a line."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once, nothing else (never back into pytest)
            try:
                os.execvpe(argv[0], list(argv), env or ENV)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""

    def expect(self, text: str, timeout: float = 30.0) -> str:
        """Read until ``text`` has appeared; return everything read so far."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen within {timeout} s: {self.output!r}")
            if select.select([self.fd], [], [], left)[0] and not self._read():
                raise AssertionError(f"{text!r} not seen before the end: {self.output!r}")
        return self.output

    def _read(self) -> bool:
        try:
            data = os.read(self.fd, READ_BYTES)
        except OSError:  # EIO: the other side closed
            return False
        self.output += data.decode(errors="replace")
        return bool(data)

    def send(self, line: str) -> None:
        """Type ``line`` and Enter."""
        os.write(self.fd, (line + "\n").encode())

    def close(self, timeout: float = 10.0) -> int:
        """Wait for the program to end (kill it past ``timeout``); return its exit status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            if select.select([self.fd], [], [], 0.1)[0]:
                self._read()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)
