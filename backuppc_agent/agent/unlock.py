"""Opt-in unattended unlock: load [agent] keys with passphrases from the keyring.

With ``[agent] unlock = "keyring"`` the supervisor loads the configured keys
itself whenever it attaches to an agent it has not unlocked yet: at start,
after every agent restart, and after adopting an agent (only the keys the
agent does not already hold). It runs as a supervisor Listener on a worker
thread, so a slow keyring backend never stalls the supervision loop. A missing
or wrong passphrase is logged as one clear line; the state stays waiting and an
operator's interactive ``ssh-add`` works as always.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent.agent import keyfiles, passphrases
from backuppc_agent.agent.passphrases import PassphraseError
from backuppc_agent.agent.probe import ProbeResult, probe
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.state import Snapshot

logger = logging.getLogger(__name__)

#: How long the supervisor's shutdown waits for an unlock in progress.
CLOSE_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class KeyOutcome:
    """What happened to one configured key."""

    key: Path
    loaded: bool
    detail: str


def unlock_missing(
    config: Config, probe_fn: Callable[[Path, float], ProbeResult] = probe
) -> list[KeyOutcome]:
    """Load every configured key the agent does not hold; log and return the outcomes."""
    agent = config.agent
    result = probe_fn(agent.socket, agent.probe_timeout_seconds)
    if not result.answered:
        logger.error("unattended unlock: no agent answers on %s: %s", agent.socket, result.detail)
        return []
    held = set(result.fingerprints)
    return [_unlock_one(agent.socket, key, held) for key in agent.keys]


def _unlock_one(socket: Path, key: Path, held: set[str]) -> KeyOutcome:
    fingerprint = keyfiles.key_fingerprint(key)
    if fingerprint is not None and fingerprint in held:
        return KeyOutcome(key, True, "already loaded")
    try:
        passphrase = passphrases.get(key)
        if passphrase is None:
            raise PassphraseError(
                f"no passphrase for {key} in keyring {passphrases.backend_name()}; "
                f"store it with: backuppc-agent passphrase set {key}"
            )
        passphrases.add(socket, key, passphrase)
    except BackupPCAgentError as err:
        logger.error(
            "unattended unlock of %s failed: %s; the agent stays waiting: "
            "load the key by hand with: SSH_AUTH_SOCK=%s ssh-add %s",
            key,
            err,
            socket,
            key,
        )
        return KeyOutcome(key, False, str(err))
    logger.info("unattended unlock: loaded %s (%s)", key, fingerprint or "fingerprint unknown")
    return KeyOutcome(key, True, "loaded")


class KeyringUnlocker:
    """Supervisor listener: unlock each new agent once, on a worker thread."""

    def __init__(
        self, config: Config, unlock_fn: Callable[[Config], object] = unlock_missing
    ) -> None:
        self._config = config
        self._unlock = unlock_fn
        self._unlocked_pid: int | None = None
        self._lock = threading.Lock()
        self._pending = False
        self._thread: threading.Thread | None = None

    def on_snapshot(self, old: Snapshot | None, new: Snapshot) -> None:
        """Start an unlock when an agent we have not unlocked yet answers."""
        if self._config.agent.unlock != "keyring" or not new.agent_up:
            return
        if new.agent_pid is None or new.agent_pid == self._unlocked_pid:
            return
        self._unlocked_pid = new.agent_pid
        self._request()

    def on_reload(self, config: Config) -> None:
        """Take the new settings; unlock at once if keyring unlock or its keys just changed."""
        with self._lock:
            old, self._config = self._config.agent, config
        new = config.agent
        if new.unlock == "keyring" and (old.unlock != new.unlock or old.keys != new.keys):
            self._request()

    def close(self) -> None:
        """Wait briefly for an unlock in progress (its ssh-add has its own timeout)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(CLOSE_WAIT_SECONDS)

    def _request(self) -> None:
        with self._lock:
            self._pending = True
            if self._thread is not None:
                return  # the running worker picks the request up
            self._thread = threading.Thread(target=self._work, name="keyring-unlock", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                self._pending = False
                config = self._config
            try:
                self._unlock(config)
            except Exception:
                logger.exception("unattended unlock failed unexpectedly")
