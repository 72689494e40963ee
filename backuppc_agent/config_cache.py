"""A private cache of the validated configuration, for short-lived commands.

Parsing TOML costs about a quarter of a hook's 40 ms budget (tomllib imports
datetime and compiles its regular expressions at import). The validated
values are kept in ``~/.cache/backuppc-agent`` (0700, files 0600, never read
through a symlink), keyed by the config file's identity (device, inode, size,
mtime and ctime in nanoseconds), the home directory, the package version, the
schema and the Python version: any change to any of them misses the cache and
the file is parsed again. The format is ``marshal``: even json's import costs a
hook ~2 ms, and only this exact Python reads the file back; the file lives in
our own private directory, so it is as trusted as the state files beside it.
A cache that cannot be read or written is only a lost optimisation.
"""

from __future__ import annotations

import marshal
import os
import sys
from pathlib import Path

from backuppc_agent import __version__, paths
from backuppc_agent.errors import UnsafePathError

TYPE_CHECKING = False  # see records.py: typing stays off the hot path
if TYPE_CHECKING:
    from typing import Any

CACHE_SUBDIR = ".cache/backuppc-agent"
MAX_NAME = 200


def cache_file(home: Path, config_path: Path) -> Path:
    """The cache file for one config file (its path, made a file name)."""
    name = str(config_path).replace("%", "%25").replace("/", "%2F")
    if len(name) > MAX_NAME:
        name = name[-MAX_NAME:]
    return home / CACHE_SUBDIR / f"config{name}.marshal"


def file_key(config_path: Path, home: Path, schema: str) -> list[Any] | None:
    """What identifies this exact file content for this user and version, or None."""
    try:
        info = config_path.stat()
    except OSError:
        return None
    return [
        str(config_path),
        info.st_dev,
        info.st_ino,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
        str(home),
        __version__,
        schema,
        sys.version,
    ]


def read(home: Path, config_path: Path, key: list[Any]) -> dict[str, Any] | None:
    """Return the cached sections if the key matches exactly, else None."""
    target = cache_file(home, config_path)
    try:
        paths.check_dir(target.parent, "config cache")
        raw = paths.read_private_file(target)
    except UnsafePathError:
        return None
    if raw is None:
        return None
    try:
        data = marshal.loads(raw)  # noqa: S302  (our own 0600 file in our 0700 dir)
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    sections = data.get("sections")
    return sections if isinstance(sections, dict) else None


def write(home: Path, config_path: Path, key: list[Any], sections: dict[str, Any]) -> None:
    """Store validated sections; any failure only costs the next command a parse."""
    target = cache_file(home, config_path)
    if os.getuid() != _owner(home):
        return
    try:
        paths.ensure_private_dir(target.parent, "config cache")
        data = marshal.dumps({"key": key, "sections": _plain(sections)})
        paths.write_private_file(target, data)
    except UnsafePathError:
        return


def _owner(home: Path) -> int:
    try:
        return home.stat().st_uid
    except OSError:
        return -1


def _plain(value: Any) -> Any:
    """Paths as strings, tuples as lists: only types marshal keeps exactly."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
