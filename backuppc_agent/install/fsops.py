"""File-system steps of ``install`` and ``trust``: bounded read, atomic write, directories.

A replaced file keeps its mode and owner (BackupPC's config.pl stays
backuppc:www-data 0644); a new one gets the caller's. Symlinks are never followed.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from typing import TypeAlias

from backuppc_agent import exitcodes, paths
from backuppc_agent.errors import BackupPCAgentError, UnsafePathError

MAX_TEXT_BYTES = 4 << 20

#: (uid, gid) to give what install creates; None: whoever runs install.
Owner: TypeAlias = tuple[int, int] | None


class InstallError(BackupPCAgentError):
    """A file could not be read or written."""

    exit_code = exitcodes.FAILED


def owner_of(user: pwd.struct_passwd) -> Owner:
    """``user`` and its primary group when we may chown (we are root), else None."""
    return (user.pw_uid, user.pw_gid) if os.geteuid() == 0 else None


def read_text(path: Path) -> str | None:
    """Return the text of ``path``, None if missing; refuse symlinks and huge files."""
    try:
        data = paths.read_bounded(path, MAX_TEXT_BYTES)
    except UnsafePathError as err:
        raise InstallError(str(err)) from err
    return None if data is None else data.decode("utf-8", errors="surrogateescape")


def write_text(path: Path, text: str, mode: int, owner: Owner, keep_owner: bool = True) -> None:
    """Atomically replace ``path``; a file there keeps its mode (and owner if ``keep_owner``)."""
    try:
        existing = path.lstat()
    except FileNotFoundError:
        existing = None
    except OSError as err:
        raise InstallError(f"{path}: cannot inspect: {err.strerror}") from err
    if existing is not None:
        if stat.S_ISLNK(existing.st_mode):
            raise InstallError(f"{path} is a symlink; refusing to write through it")
        mode = stat.S_IMODE(existing.st_mode)
        owner = (existing.st_uid, existing.st_gid) if keep_owner else owner
    try:
        paths.replace_file(path, text.encode("utf-8", errors="surrogateescape"), mode, owner)
    except UnsafePathError as err:
        raise InstallError(str(err)) from err


def ensure_dir(path: Path, mode: int, owner: Owner) -> None:
    """Create ``path`` and its missing parents, each with ``mode`` and ``owner``; InstallError.

    Parents too: ~backuppc/.local/state/backuppc-agent must not leave a root-owned ~/.local.
    """
    for directory in reversed([p for p in (path, *path.parents) if not p.exists()]):
        try:
            directory.mkdir(mode=mode)
            if owner is not None:
                os.chown(directory, *owner)
            directory.chmod(mode)
        except OSError as err:
            raise InstallError(f"{directory}: cannot create directory: {err.strerror}") from err
