"""Messages to the BackupPC server (``backup all``, ``log TEXT``), bounded in time.

They go over the server's socket as BackupPC_serverMesg sends them, but without
running that program: a BackupPC_serverMesg killed at a timeout hangs up on a
server that has not answered yet, and the server dies of the SIGPIPE.
serversock never hangs up before the server has written. The socket needs no
particular user: the message is signed with $Conf{ServerMesgSecret}.
"""

from __future__ import annotations

from backuppc_agent.backuppc import confdir, serversock
from backuppc_agent.backuppc.hoststatus import MalformedError
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError

TIMEOUT_SECONDS = 10.0
#: The reply is logged; BackupPC's replies to these messages are one short line.
MAX_REPLY_CHARS = 300


class ServerMesgError(BackupPCAgentError):
    """The BackupPC server could not be asked, or did not answer in time."""


def send(config: Config, *words: str) -> str:
    """Send one message (words joined by spaces); return the reply line. Raises ServerMesgError."""
    try:
        settings = confdir.ConfDir(config.backuppc.conf_dir).main()
    except MalformedError as err:
        raise ServerMesgError(f"cannot read {err}") from err
    if settings is None:
        raise ServerMesgError(f"cannot read {config.backuppc.conf_dir / 'config.pl'}: no such file")
    secret = confdir.server_secret(settings)
    try:
        reply = serversock.query(config.backuppc.run_dir, secret, " ".join(words), TIMEOUT_SECONDS)
    except serversock.ServerError as err:
        raise ServerMesgError(str(err)) from err
    return reply[:MAX_REPLY_CHARS]
