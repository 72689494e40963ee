"""Publish the supervisor's readiness when it changes: the state file, then the listeners."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from backuppc_agent import state
from backuppc_agent.config import Config
from backuppc_agent.errors import UnsafePathError
from backuppc_agent.state import Snapshot

logger = logging.getLogger(__name__)

PUBLISH_ERROR_REPEAT_SECONDS = 60.0


class Listener(Protocol):
    """Something that follows the supervisor: the on-ready notifier, the exporter."""

    def on_snapshot(self, old: Snapshot | None, new: Snapshot) -> None:
        """Called from the loop whenever the published snapshot changes."""

    def on_reload(self, config: Config) -> None:
        """Called after SIGHUP loaded a valid new configuration."""

    def close(self) -> None:
        """Called once when the supervisor stops."""


class Publisher:
    """Holds the last published snapshot; writes the state file and tells the listeners."""

    def __init__(
        self, state_dir: Path, listeners: Sequence[Listener], clock: Callable[[], float]
    ) -> None:
        self.state_dir = state_dir
        self.listeners = list(listeners)
        self.snapshot: Snapshot | None = None
        self._clock = clock
        self._error_at = -PUBLISH_ERROR_REPEAT_SECONDS
        self._unpublished = False

    def publish(self, new: Snapshot, force: bool = False) -> None:
        """Publish ``new`` if it differs from the last one beyond ``updated`` (or ``force``)."""
        old = self.snapshot
        if not force and old is not None and dataclasses.replace(old, updated=new.updated) == new:
            if self._unpublished:
                self._write(new)
            return
        if old is None or old.state is not new.state:
            before = old.state.value if old else "none"
            logger.info("state %s -> %s: %s", before, new.state.value, new.reason)
        self.snapshot = new
        self._write(new)
        self._tell(lambda listener: listener.on_snapshot(old, new), "failed")

    def _write(self, snap: Snapshot) -> None:
        """Write the state file; on failure say so (once a minute) and retry each poll."""
        try:
            state.publish(self.state_dir, snap)
        except UnsafePathError as err:
            self._unpublished = True
            if self._clock() - self._error_at >= PUBLISH_ERROR_REPEAT_SECONDS:
                self._error_at = self._clock()
                logger.error("cannot publish state (readers see stale state): %s", err)
            return
        if self._unpublished:
            self._unpublished = False
            logger.info("state published again after earlier write failures")

    def reload(self, config: Config) -> None:
        """Tell every listener about a new configuration."""
        self._tell(lambda listener: listener.on_reload(config), "failed on reload")

    def close(self) -> None:
        """Close every listener, whatever they raise."""
        self._tell(lambda listener: listener.close(), "failed to close")

    def _tell(self, call: Callable[[Listener], None], failed: str) -> None:
        """``call`` each listener in turn; one that raises is logged and the rest still hear."""
        for listener in self.listeners:
            try:
                call(listener)
            except Exception:
                logger.exception("listener %s %s", type(listener).__name__, failed)
