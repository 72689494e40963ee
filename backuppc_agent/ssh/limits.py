"""What a configured path may hold: the limits of Unix sockets and what ssh would misread.

Config validation applies these to every path key. A Unix socket path holds 108
bytes on Linux (104 on BSD) with its NUL, and an ssh master first binds its
ControlPath plus '.' and 16 random characters: a control path (CONTROL_DIR/CLIENT)
may be at most 90 characters. ssh reads paths in ssh_config and ``-o`` through one
word splitter (whitespace, quotes, backslashes, '#' comments, '%' tokens, '$'
variables), so a path holding any of those reaches ssh as something else.
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
