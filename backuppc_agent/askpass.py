"""The SSH_ASKPASS helper of unattended unlock: hand ssh-add the line on our stdin.

The helper inherits ssh-add's stdin, a pipe holding the passphrase: never an argv, an
environment, a file or a log. A second prompt (wrong passphrase) finds the pipe empty. With
``BACKUPPC_AGENT_ASKPASS=clevis`` the pipe holds the Clevis JWE and the helper becomes
``clevis decrypt``: the plaintext never passes through a process of ours. Imports nothing heavy.
"""

from __future__ import annotations

import os
import sys

#: A passphrase line longer than this is not a passphrase.
MAX_LINE_BYTES = 8192
PROG = "backuppc-agent-askpass"
MODE_VAR = "BACKUPPC_AGENT_ASKPASS"
CLEVIS = "clevis"
#: The JWE on stdin, the plaintext on stdout.
CLEVIS_DECRYPT = (CLEVIS, "decrypt")


def answer(stdin_fd: int, stdout_fd: int) -> int:
    """Copy one line from ``stdin_fd`` to ``stdout_fd``; 1 if there is none."""
    if os.isatty(stdin_fd):
        os.write(2, f"{PROG}: only ssh-add runs this, as SSH_ASKPASS\n".encode())
        return 1
    line = _read_line(stdin_fd)
    if not line:
        return 1
    view = memoryview(line.rstrip(b"\r\n") + b"\n")
    while view:
        view = view[os.write(stdout_fd, view) :]
    return 0


def _read_line(fd: int) -> bytes:
    """Read up to the first newline, byte by byte, leaving the rest in the pipe."""
    data = bytearray()
    while len(data) < MAX_LINE_BYTES and not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def main() -> int:
    """Console entry point ``backuppc-agent-askpass [PROMPT]``."""
    try:
        if os.environ.get(MODE_VAR) == CLEVIS and not os.isatty(0):
            os.execvp(CLEVIS, CLEVIS_DECRYPT)  # noqa: S606 (fixed argv, the JWE on stdin)
        return answer(sys.stdin.fileno(), sys.stdout.fileno())
    except OSError as err:
        os.write(2, f"{PROG}: {err.strerror}\n".encode())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
