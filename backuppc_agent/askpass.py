"""The SSH_ASKPASS helper of unattended unlock: hand ssh-add the line on our stdin.

ssh-add runs ``SSH_ASKPASS PROMPT`` with no other arguments and reads the
passphrase from the helper's stdout. The unlocker starts ssh-add with the
passphrase waiting in a pipe on ssh-add's stdin, which the helper inherits:
the passphrase never appears in an argv, an environment, a file or a log.
A second prompt (a wrong passphrase) finds the pipe empty and gets nothing,
so ssh-add gives up instead of asking forever. Imports nothing heavy: it runs
once per key at every agent start.

With ``BACKUPPC_AGENT_ASKPASS=clevis`` in its environment the helper becomes
``clevis decrypt`` instead: ssh-add's stdin then holds the Clevis JWE, and the
plaintext goes from clevis straight to ssh-add, never through a process of ours.
"""

from __future__ import annotations

import os
import sys

#: A passphrase line longer than this is not a passphrase.
MAX_LINE_BYTES = 8192
PROG = "backuppc-agent-askpass"
#: The environment variable that selects the helper's mode, and the Clevis mode's value.
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
    while len(data) < MAX_LINE_BYTES:
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
        if chunk == b"\n":
            break
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
