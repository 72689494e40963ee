"""Exclusive flock on a private lock file, taken within a deadline: the supervisor's on
its state dir, and the per-client one that makes concurrent hooks open one master.
Closing the descriptor releases it, also when the holder dies.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from backuppc_agent import paths, waits
from backuppc_agent.errors import BackupPCAgentError, UnsafePathError

POLL_SECONDS = 0.01


class FileLock:
    """An exclusive flock on ``path`` (created 0600, never through a symlink)."""

    def __init__(self, path: Path, error: type[BackupPCAgentError] = UnsafePathError) -> None:
        self.path = path
        self._error = error
        self._fd: int | None = None

    def acquire(self, timeout: float) -> bool:
        """Take the lock within ``timeout``; False if another holder keeps it.

        Raises ``error`` if the lock file cannot be opened (a read-only dir, a symlink).
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, paths.PRIVATE_FILE_MODE)
        except OSError as err:
            raise self._error(f"cannot lock {self.path}: {err.strerror}") from err
        if not waits.until(lambda: _try_lock(fd), time.monotonic() + timeout, POLL_SECONDS):
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _try_lock(fd: int) -> bool:
    """Take an exclusive flock on ``fd`` without blocking; False if another holder has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
