"""The files each client's master keeps in ``STATE_DIR/masters``: lock, log, last host.

All of them live in a 0700 directory of the state dir: ``CLIENT.lock`` (the
flock that makes concurrent hooks for one client open one master),
``CLIENT.log`` (the master's own ``-E`` log, rotated once large) and
``CLIENT.host`` (the host it was last opened to, for ``master open`` and
``kill-remote`` without a host) and ``CLIENT.access`` (what the backup key last
got there: a remote.Answer value, see remote.probe_access; its mtime says when).
"""

from __future__ import annotations

import logging
from pathlib import Path

from backuppc_agent import exitcodes, names, paths
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError, UnsafePathError

logger = logging.getLogger(__name__)

MASTERS_DIR = "masters"
#: A log above this size is rotated to CLIENT.log.old when the next master opens.
LOG_MAX_BYTES = 256 * 1024


class MasterError(BackupPCAgentError):
    """The client's master could not be opened or reached."""

    exit_code = exitcodes.HOOK_SSH_FAILED


def masters_dir(config: Config) -> Path:
    """``STATE_DIR/masters`` (0700): per-client locks, logs and the last host used."""
    directory = config.state.dir / MASTERS_DIR
    try:
        paths.ensure_private_dir(config.state.dir, "state")
        paths.ensure_private_dir(directory, "masters")
    except UnsafePathError as err:  # a read-only or full state dir: opening fails, says why
        raise MasterError(f"cannot open a master: {err}") from err
    return directory


def rotate_log(log: Path) -> None:
    """Move ``log`` to LOG.old once it is larger than LOG_MAX_BYTES."""
    try:
        if log.stat().st_size > LOG_MAX_BYTES:
            log.replace(log.with_name(log.name + ".old"))
    except OSError:
        pass


def last_log_line(log: Path) -> str:
    """The last non-blank line of ``log``, printable and at most 300 characters."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return names.visible(names.last_line(text), 300)


def remember(directory: Path, client: str, what: str, value: str) -> None:
    """Record CLIENT's ``what`` in DIRECTORY/CLIENT.WHAT; a failure is only logged.

    "host": where its master was opened to; "access": what the backup key gets there.
    """
    try:
        paths.write_private_file(directory / f"{client}.{what}", value.encode() + b"\n")
    except BackupPCAgentError as err:
        logger.warning("cannot record the %s of %s: %s", what, client, err)


def remembered_host(config: Config, client: str) -> str | None:
    """The host the last master for CLIENT was opened to, if recorded and still valid."""
    if names.problem(client) is not None:
        return None  # never build a path from a bad name; the caller refuses it
    try:
        raw = paths.read_bounded(config.state.dir / MASTERS_DIR / f"{client}.host", 4096)
    except BackupPCAgentError:
        return None
    host = raw.decode("utf-8", "replace").strip() if raw else ""
    return host if host and names.problem(host) is None else None
