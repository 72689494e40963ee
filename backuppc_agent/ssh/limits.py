"""What a configured path may hold: Unix socket limits and what ssh would misread.

A master first binds its ControlPath plus '.' and 16 random characters, within
sun_path's 108 bytes (104 on BSD): CONTROL_DIR/CLIENT may be 90 characters.
"""

from __future__ import annotations

import os
from pathlib import Path

CONTROL_PATH_MAX_CHARS = 90
#: control_dir must leave room for client names of at least this many characters.
MIN_CLIENT_CHARS = 32
#: Longest agent socket path (sun_path is 108 bytes on Linux, the NUL included).
SOCKET_PATH_MAX_BYTES = 107
#: Characters ssh expands, unquotes or cuts at in a path (besides whitespace and control).
SSH_UNSAFE_CHARS = "%$\"'\\#"


def client_budget(control_dir: Path) -> int:
    """The longest client name whose control path fits in CONTROL_PATH_MAX_CHARS."""
    return CONTROL_PATH_MAX_CHARS - len(str(control_dir)) - 1


def control_dir_problem(control_dir: Path) -> str | None:
    """Why ``control_dir`` cannot hold control sockets, or None if it can."""
    text = str(control_dir)
    if client_budget(control_dir) < MIN_CLIENT_CHARS:
        longest = CONTROL_PATH_MAX_CHARS - MIN_CLIENT_CHARS - 1
        return (
            f"{text!r} is {len(text)} characters; at most {longest} leaves room for "
            f"{MIN_CLIENT_CHARS}-character client names in a {CONTROL_PATH_MAX_CHARS}-character "
            "socket path"
        )
    return None


def socket_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be bound as a Unix socket (too long), or None."""
    size = len(os.fsencode(path))
    if size > SOCKET_PATH_MAX_BYTES:
        return f"{str(path)!r} is {size} bytes; a socket path holds {SOCKET_PATH_MAX_BYTES}"
    return None


def unsafe_path_problem(path: Path) -> str | None:
    """Why ssh would misread ``path`` (whitespace, a quote, '%', '$', '#', control), or None."""
    text = str(path)
    if any(char in SSH_UNSAFE_CHARS or char.isspace() or not char.isprintable() for char in text):
        return (
            f"{text!r} must not contain whitespace, control characters, quotes, backslashes, "
            "'%', '$' or '#' (ssh would misread it)"
        )
    return None
