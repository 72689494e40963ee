"""Each client's master files in ``STATE_DIR/masters`` (0700): CLIENT.lock, CLIENT.log (``-E``),
CLIENT.host (last host, for ``master open``/``kill-remote`` without one), CLIENT.access
(remote.Answer the backup key last got; its mtime says when).
"""

from __future__ import annotations

import contextlib
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
    """``STATE_DIR/masters``, made private if need be; raise MasterError if it cannot be."""
    directory = config.state.dir / MASTERS_DIR
    try:
        paths.ensure_private_dir(config.state.dir, "state")
        paths.ensure_private_dir(directory, "masters")
    except UnsafePathError as err:  # a read-only or full state dir: opening fails, says why
        raise MasterError(f"cannot open a master: {err}") from err
    return directory


def rotate_log(log: Path) -> None:
    """Move ``log`` to LOG.old once it is larger than LOG_MAX_BYTES."""
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_MAX_BYTES:
            log.replace(log.with_name(log.name + ".old"))


def last_log_line(log: Path) -> str:
    """The last non-blank line of ``log``, printable and at most 300 characters."""
    text = ""
    with contextlib.suppress(OSError), log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - 4096))
        text = handle.read().decode("utf-8", "replace")
    return names.visible(names.last_line(text), 300)


def remember(directory: Path, client: str, what: str, value: str) -> None:
    """Record CLIENT's ``what`` ("host", "access") in DIRECTORY/CLIENT.WHAT; failures are logged."""
    try:
        paths.write_private_file(directory / f"{client}.{what}", value.encode() + b"\n")
    except BackupPCAgentError as err:
        logger.warning("cannot record the %s of %s: %s", what, client, err)


def recall(directory: Path, client: str, what: str) -> str:
    """What remember() recorded for CLIENT's ``what``; "" if nothing (or a bad name)."""
    if names.problem(client) is not None:
        return ""  # never build a path from a bad name
    try:
        raw = paths.read_bounded(directory / f"{client}.{what}", 4096)
    except BackupPCAgentError:
        return ""
    return raw.decode("utf-8", "replace").strip() if raw else ""


def remembered_host(config: Config, client: str) -> str | None:
    """The host the last master for CLIENT was opened to, if recorded and still valid."""
    host = recall(config.state.dir / MASTERS_DIR, client, "host")
    return host if host and names.problem(host) is None else None
