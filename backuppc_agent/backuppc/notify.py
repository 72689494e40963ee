"""The supervisor's on-ready notifier: tell BackupPC the moment the keys arrive.

When the state turns ready and ``[hooks] on_ready = "backup-all"``, BackupPC is
asked to run its queue now (``backup all``) instead of at its next wakeup, and
told why in its log: in a thread, so the supervisor's loop never waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from backuppc_agent.backuppc import serversock
from backuppc_agent.config import Config
from backuppc_agent.state import Snapshot, State

logger = logging.getLogger(__name__)

LOG_LINE = "backuppc-agent: SSH keys loaded ({reason}); asked for queued backups to run now"
JOIN_SECONDS = 2.0


class OnReadyNotifier:
    """A supervisor Listener that runs ``backup all`` when readiness arrives."""

    def __init__(self, config: Config, send: Callable[..., str] = serversock.send) -> None:
        self.config = config
        self._send = send
        self._thread: threading.Thread | None = None

    def on_snapshot(self, old: Snapshot | None, new: Snapshot) -> None:
        """On a move into ready, start one notification (unless one still runs)."""
        became_ready = new.state is State.READY and (old is None or old.state is not State.READY)
        if not became_ready or self.config.hooks.on_ready != "backup-all":
            return
        if self._thread is not None and self._thread.is_alive():
            logger.warning("on_ready: the previous BackupPC notification is still running")
            return
        self._thread = threading.Thread(
            target=self._notify, args=(new.reason,), name="on-ready", daemon=True
        )
        self._thread.start()

    def _notify(self, reason: str) -> None:
        try:
            self._send(self.config, "backup", "all")
            self._send(self.config, "log", LOG_LINE.format(reason=reason))
        except serversock.ServerError as err:
            logger.error("on_ready: could not ask BackupPC to run queued backups: %s", err)
            return
        logger.info("on_ready: asked BackupPC to run queued backups (backup all)")

    def on_reload(self, config: Config) -> None:
        """Use the new [hooks] and [backuppc] settings from now on."""
        self.config = config

    def close(self) -> None:
        """Give a running notification a moment to finish (it is bounded anyway)."""
        if self._thread is not None:
            self._thread.join(JOIN_SECONDS)
