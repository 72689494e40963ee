"""File-system steps of ``install`` and ``trust``: read, atomic write, directories.

New files get the mode and owner the caller names; replaced files keep the mode
and owner they had, so BackupPC's config.pl stays backuppc:www-data 0644.
Symlinks are never followed.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import exitcodes, paths
from backuppc_agent.errors import BackupPCAgentError, UnsafePathError

MAX_TEXT_BYTES = 4 << 20


class InstallError(BackupPCAgentError):
    """A file could not be read or written."""

    exit_code = exitcodes.FAILED


@dataclass(frozen=True)
class Owner:
    """Who owns a file install creates; None = whoever runs install."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def of_user(cls, name: str) -> Owner:
        """The user and its primary group, when we may chown (we are root)."""
        if os.geteuid() != 0:
            return cls()
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise InstallError(f"user {name} does not exist") from None
        return cls(entry.pw_uid, entry.pw_gid)


def read_text(path: Path) -> str | None:
    """Return the text of ``path``, None if missing; refuse symlinks and huge files."""
    try:
        data = paths.read_bounded(path, MAX_TEXT_BYTES)
    except UnsafePathError as err:
        raise InstallError(str(err)) from err
    return None if data is None else data.decode("utf-8", errors="surrogateescape")


def write_text(path: Path, text: str, mode: int, owner: Owner, keep_owner: bool = True) -> None:
    """Atomically replace ``path``; an existing file keeps its mode (and owner if ``keep_owner``).

    ``keep_owner=False`` gives the file to ``owner`` (Owner() = whoever runs this).
    """
    existing = _lstat(path)
    if existing is not None:
        mode = stat.S_IMODE(existing.st_mode)
        if keep_owner:
            owner = Owner(existing.st_uid, existing.st_gid)
    ids = None if owner.uid is None else (owner.uid, -1 if owner.gid is None else owner.gid)
    try:
        paths.replace_file(path, text.encode("utf-8", errors="surrogateescape"), mode, ids)
    except UnsafePathError as err:
        raise InstallError(str(err)) from err


def _lstat(path: Path) -> os.stat_result | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise InstallError(f"{path}: cannot inspect: {err.strerror}") from err
    if stat.S_ISLNK(info.st_mode):
        raise InstallError(f"{path} is a symlink; refusing to write through it")
    return info


def ensure_dir(path: Path, mode: int, owner: Owner) -> bool:
    """Create ``path`` and its missing parents, each with ``mode`` and ``owner``.

    Returns True if anything was created (~backuppc/.local/state/backuppc-agent
    must not leave a root-owned ~/.local behind). Raises InstallError.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
            if owner.uid is not None:
                os.chown(directory, owner.uid, owner.gid if owner.gid is not None else -1)
            directory.chmod(mode)
        except OSError as err:
            raise InstallError(f"{directory}: cannot create directory: {err.strerror}") from err
    return bool(missing)
