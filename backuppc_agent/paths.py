"""Safe handling of the paths we own: sockets, state files, locks, private directories.

Symlinks, foreign owners and directories others can write are refused: these files
guard root keys.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import stat
import time
from pathlib import Path

from backuppc_agent import waits
from backuppc_agent.errors import BackupPCAgentError, UnsafePathError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: read_bounded reads this much at a time (a 16 MiB buffer per small file costs; 256 KiB does not)
READ_CHUNK_BYTES = 256 * 1024
LOCK_POLL_SECONDS = 0.01
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class SocketPath(enum.Enum):
    """What lies at a socket path that passed the safety checks."""

    MISSING = "missing"
    SOCKET = "socket"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UnsafePathError(f"{path}: cannot inspect: {err.strerror}") from err


def _check_kind(info: os.stat_result, label: str, kind: int, unlike: str, owners: set[int]) -> None:
    """Refuse a symlink, a file not of ``kind`` (S_IFDIR, ...: ``unlike`` says so), other owners."""
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{label} is a symlink; refusing to use it")
    if stat.S_IFMT(info.st_mode) != kind:
        raise UnsafePathError(f"{label} {unlike}")
    if info.st_uid not in owners:
        raise UnsafePathError(
            f"{label} is owned by uid {info.st_uid}, not by us (uid {os.getuid()})"
        )


def check_dir(path: Path, what: str) -> None:
    """Require an existing real directory owned by us (or root) that others cannot write."""
    info = _lstat(path)
    if info is None:
        raise UnsafePathError(f"{what} directory {path} does not exist")
    _check_kind(
        info, f"{what} directory {path}", stat.S_IFDIR, "is not a directory", {os.getuid(), 0}
    )
    if info.st_mode & _OTHERS_WRITE:
        raise UnsafePathError(
            f"{what} directory {path} is writable by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod go-w {path}"
        )


def ensure_private_dir(path: Path, what: str) -> None:
    """Create ``path`` (and missing parents) mode 0700, then check that it is safe."""
    if _lstat(path) is None:
        try:
            path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        except OSError as err:
            problem = f"{what} directory {path}: cannot create: {err.strerror}"
            raise UnsafePathError(problem) from err
    check_dir(path, what)


def check_socket_path(path: Path, what: str = "agent socket") -> SocketPath:
    """Check a socket path and its directory; return whether a socket is there."""
    check_dir(path.parent, what)
    info = _lstat(path)
    if info is None:
        return SocketPath.MISSING
    unlike = "exists and is not a socket; move it away"
    _check_kind(info, f"{what} {path}", stat.S_IFSOCK, unlike, {os.getuid()})
    return SocketPath.SOCKET


def write_private_file(path: Path, data: bytes) -> None:
    """``replace_file`` with mode 0600; raise UnsafePathError."""
    replace_file(path, data, PRIVATE_FILE_MODE)


def replace_file(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Atomically replace ``path`` with ``data`` in ``mode`` (and ``owner``: uid, gid; -1 keeps).

    Written to a temporary file beside it (created exclusively, never through a
    symlink), then renamed over it: a reader sees the old file or the new one, never
    half. Raises UnsafePathError.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # left by a crash of an earlier process with our pid
        tmp.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, PRIVATE_FILE_MODE)
        try:
            write_all(fd, data)
            if owner is not None:
                os.fchown(fd, *owner)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        tmp.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UnsafePathError(f"{path}: cannot write: {err.strerror}") from err


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_bounded(path: Path | str, limit: int, follow: bool = False) -> bytes | None:
    """Read a file of at most ``limit`` bytes; None if it does not exist.

    A symlink is refused unless ``follow`` (files we wrote are never read
    through one); a FIFO never blocks. Raises UnsafePathError if the file
    cannot be read or is larger than ``limit``.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    chunks, size = [], 0
    try:
        fd = os.open(path, flags)
        try:
            while size <= limit and (chunk := os.read(fd, min(limit + 1, READ_CHUNK_BYTES))):
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UnsafePathError(f"{path}: cannot read: {err.strerror or err}") from err
    if size > limit:
        raise UnsafePathError(f"{path}: larger than {limit} bytes")
    return b"".join(chunks)


def read_or_empty(path: Path | str, limit: int) -> str:
    """The text of a file we only look into (symlinks followed, bad bytes replaced).

    "" if it is missing, unreadable or larger than ``limit``: never raises.
    """
    try:
        data = read_bounded(path, limit, follow=True)
    except UnsafePathError:
        return ""
    return "" if data is None else data.decode("utf-8", "replace")


class FileLock:
    """An exclusive flock on ``path`` (created 0600, never through a symlink).

    The supervisor's on its state dir, and the per-client one that makes concurrent
    hooks open one master. Closing the descriptor releases it, also when the holder dies.
    """

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
            fd = os.open(self.path, flags, PRIVATE_FILE_MODE)
        except OSError as err:
            raise self._error(f"cannot lock {self.path}: {err.strerror}") from err
        if not waits.until(lambda: _try_lock(fd), time.monotonic() + timeout, LOCK_POLL_SECONDS):
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
