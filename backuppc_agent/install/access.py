"""Can the BackupPC user run the program install writes, and read the files it names?

Asked as that user (``runuser`` as root): a program under /root (pyenv, a root-only
venv) passes every check made as root and fails every backup.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import names, proc
from backuppc_agent.config import Config

RUN_TIMEOUT_SECONDS = 30.0
VENV_FIX = (
    "install the Debian package (apt install ./backuppc-agent_*.deb), or a venv the user can "
    "reach: /usr/bin/python3 -m venv /opt/backuppc-agent (README: Install), then run its "
    "backuppc-agent install"
)

Runner = Callable[[pwd.struct_passwd, Sequence[str]], tuple[int, str]]


@dataclass(frozen=True)
class Problem:
    """Something the BackupPC user cannot do, and the fix."""

    message: str
    fix: str

    def line(self) -> str:
        """The one line install prints."""
        return f"{self.message}: {self.fix}"


def as_user(user: pwd.struct_passwd) -> tuple[str, ...]:
    """The argv prefix that runs a command as ``user`` (root only): its ids, groups, HOME, no tty.

    runuser, not setpriv: setpriv's own execve still has root's capabilities, so a
    program under /root would start where ``user`` alone cannot start it.
    """
    return ("runuser", "-u", user.pw_name, "--")


def run_as(user: pwd.struct_passwd, argv: Sequence[str]) -> tuple[int, str]:
    """Run ``argv`` as ``user``: (exit status, last line of stderr); (-1, "") if we cannot."""
    if os.geteuid() == user.pw_uid:
        command = tuple(argv)
    elif os.geteuid() == 0:
        command = (*as_user(user), *argv)
    else:
        return -1, ""
    try:
        result = proc.run(command, RUN_TIMEOUT_SECONDS, cwd=Path("/"))
    except proc.CommandError as err:
        return 1, str(err)
    return result.returncode, names.last_line(result.stderr.decode(errors="replace"))


def problems(
    user: pwd.struct_passwd,
    program: str | None,
    config_path: Path,
    config: Config,
    runner: Runner = run_as,
) -> list[Problem]:
    """What the BackupPC user cannot do: run ``program`` (if given), read files that exist."""
    name = user.pw_name
    found: list[Problem] = []
    status, why = runner(user, (program, "--version")) if program else (0, "")
    if status > 0:
        reason = why or f"exit status {status}"
        found.append(Problem(f"user {name} cannot run {program} ({reason})", VENV_FIX))
    readable = [(config_path, "the config", f"chmod 0644 {config_path}")]
    for key in (*config.agent.keys, *config.mux.identity_files):
        readable.append((key, "key file", f"chown {name} {key} && chmod 0600 {key}"))
    for path, what, fix in readable:
        if path.exists() and runner(user, ("test", "-r", str(path)))[0] > 0:
            found.append(Problem(f"user {name} cannot read {what} {path}", fix))
    return found
