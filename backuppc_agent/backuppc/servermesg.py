"""Messages to the BackupPC server through ``BackupPC_serverMesg``, bounded in time.

BackupPC's tools refuse to run as any user but BackupPC's own. As that user
we run them directly; as root we run them as ``[backuppc] user`` through
runuser(1); as anyone else we do not try (and say why).
"""

from __future__ import annotations

import os
import pwd

from backuppc_agent import proc
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError

SERVERMESG = "BackupPC_serverMesg"
TIMEOUT_SECONDS = 10.0


class ServerMesgError(BackupPCAgentError):
    """BackupPC_serverMesg could not be run or failed."""


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def make_command(config: Config, *words: str, euid: int | None = None) -> tuple[str, ...]:
    """argv running BackupPC_serverMesg WORDS as BackupPC's user; raise ServerMesgError."""
    program = str(config.backuppc.bin_dir / SERVERMESG)
    user = config.backuppc.user
    uid = os.geteuid() if euid is None else euid
    if uid == 0 and user != "root":
        return ("runuser", "-u", user, "--", program, *words)
    current = _current_user() if euid is None else str(uid)
    if current != user and uid != 0:
        raise ServerMesgError(
            f"BackupPC's tools only run as {user!r} and we run as {current!r}; "
            "run the supervisor as that user (or as root)"
        )
    return (program, *words)


def send(config: Config, *words: str) -> str:
    """Send one message; return the server's reply line. Raises ServerMesgError."""
    argv = make_command(config, *words)
    try:
        done = proc.run(argv, TIMEOUT_SECONDS, env=proc.base_env())
    except proc.CommandError as err:
        raise ServerMesgError(str(err)) from err
    reply = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    last = reply.splitlines()[-1] if reply else ""
    if done.returncode != 0:
        raise ServerMesgError(f"{SERVERMESG} {words[0]} exited {done.returncode}: {last[:300]}")
    return last[:300]
