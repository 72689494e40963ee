"""Control socket path limits, shared by config validation and the ssh options.

Unix socket paths hold at most 108 bytes on Linux (104 on BSD), and an ssh
master first binds its ControlPath plus '.' and 16 random characters, so a
control path may be at most 90 characters: CONTROL_DIR + '/' + CLIENT.
"""

from __future__ import annotations

from pathlib import Path

#: Longest control socket path we create.
CONTROL_PATH_MAX_CHARS = 90
#: control_dir must leave room for client names of at least this many characters.
MIN_CLIENT_CHARS = 32
#: Characters ssh expands or misreads in a path given in ssh_config or with -o.
SSH_UNSAFE_CHARS = '%"$\n'


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
    return unsafe_path_problem(control_dir)


def unsafe_path_problem(path: Path) -> str | None:
    """Why ssh would misread ``path`` (a '%' token, '$' variable, quote), or None."""
    text = str(path)
    if any(char in text for char in SSH_UNSAFE_CHARS):
        return f"{text!r} must not contain '%', '$', '\"' or a newline (ssh expands them)"
    return None
