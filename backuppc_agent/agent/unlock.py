"""Opt-in unattended unlock: load [agent] keys with passphrases from the keyring or Tang.

For each agent not unlocked yet, a worker thread loads the keys it lacks, so a slow keyring
never stalls the loop. A missing or wrong passphrase is one log line: ``ssh-add`` still works.
While no Tang answers the worker retries, backing off to RETRY_MAX_SECONDS.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from backuppc_agent import paths
from backuppc_agent.agent import keyfiles, passphrases, tang
from backuppc_agent.agent.passphrases import PassphraseError
from backuppc_agent.agent.probe import probe
from backuppc_agent.agent.tang import TangRefusedError, TangUnreachableError
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.state import Snapshot

logger = logging.getLogger(__name__)

#: How long the supervisor's shutdown waits for an unlock in progress.
CLOSE_WAIT_SECONDS = 2.0
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 2.0
#: Status codes the supervisor publishes (Snapshot.unlock_waiting).
WAITING_TANG = "tang-unreachable"
REFUSED_TANG = "tang-refused"


@dataclass(frozen=True)
class KeyOutcome:
    """What happened to one configured key."""

    detail: str
    #: "" or WAITING_TANG (retry later) or REFUSED_TANG (re-store needed)
    waiting: str = ""


def unlock_missing(config: Config) -> list[KeyOutcome]:
    """Load every configured key the agent does not hold; log and return the outcomes."""
    agent = config.agent
    result = probe(agent.socket, agent.probe_timeout_seconds)
    if not result.answered:
        logger.error("unattended unlock: no agent answers on %s: %s", agent.socket, result.detail)
        return []
    held = set(result.fingerprints)
    return [_unlock_one(config, key, held) for key in agent.keys]


def with_tang(
    state_dir: Path, key: Path, attempt: Callable[[bytes], subprocess.CompletedProcess[bytes]]
) -> subprocess.CompletedProcess[bytes]:
    """Run ``attempt`` on the stored JWE of ``key`` (tang.open_with); name rekey if refused.

    Raises PassphraseError if no JWE is stored, else as tang.open_with.
    """
    where = tang.jwe_path(state_dir, key)
    jwe = paths.read_bounded(where, tang.JWE_MAX_BYTES)
    if jwe is None:
        raise PassphraseError(
            f"no passphrase for {key} is stored for Tang ({where}); "
            f"store it with: backuppc-agent passphrase set {key} --tang URL"
        )
    try:
        return tang.open_with(jwe, lambda: attempt(jwe))
    except TangRefusedError as err:
        raise TangRefusedError(
            f"{err}; re-store it with: backuppc-agent passphrase rekey {key}"
        ) from err


def load(config: Config, key: Path) -> None:
    """Load ``key`` with its stored passphrase; from Tang, clevis hands it to ssh-add itself."""
    socket = config.agent.socket
    if config.agent.unlock != "tang":
        passphrase = passphrases.get(key)
        if passphrase is None:
            raise PassphraseError(
                f"no passphrase for {key} in keyring {passphrases.backend_name()}; "
                f"store it with: backuppc-agent passphrase set {key}"
            )
        passphrases.add(socket, key, passphrase)
        return
    added = with_tang(config.state.dir, key, partial(passphrases.run_add, socket, key, clevis=True))
    passphrases.check_added(added, socket, key)


def _unlock_one(config: Config, key: Path, held: set[str]) -> KeyOutcome:
    socket = config.agent.socket
    fingerprint = keyfiles.key_fingerprint(key)
    if fingerprint is not None and fingerprint in held:
        return KeyOutcome("already loaded")
    try:
        load(config, key)
    except TangUnreachableError as err:
        logger.debug("unattended unlock of %s waits: %s", key, err)
        return KeyOutcome(str(err), WAITING_TANG)
    except BackupPCAgentError as err:
        logger.error(
            "unattended unlock of %s failed: %s; the agent stays waiting: "
            "load the key by hand with: SSH_AUTH_SOCK=%s ssh-add %s",
            key,
            err,
            socket,
            key,
        )
        waiting = REFUSED_TANG if isinstance(err, TangRefusedError) else ""
        return KeyOutcome(str(err), waiting)
    logger.info("unattended unlock: loaded %s (%s)", key, fingerprint or "fingerprint unknown")
    return KeyOutcome("loaded")


def waiting_status(outcomes: list[KeyOutcome]) -> tuple[str, str]:
    """(code, detail) of the outcomes that still wait on Tang; ("", "") if none."""
    for code in (WAITING_TANG, REFUSED_TANG):
        details = [o.detail for o in outcomes if o.waiting == code]
        if details:
            return code, "; ".join(dict.fromkeys(details))
    return "", ""


class Unlocker:
    """Supervisor listener: unlock each new agent once, on a worker thread; retry on Tang."""

    def __init__(
        self, config: Config, unlock_fn: Callable[[Config], list[KeyOutcome]] = unlock_missing
    ) -> None:
        self._config = config
        self._unlock = unlock_fn
        self._unlocked_pid: int | None = None
        self._lock = threading.Lock()
        self._pending = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # a new request (or close) cuts a back-off short
        self._status: tuple[str, str] = ("", "")

    def status(self) -> tuple[str, str]:
        """(code, detail) while unlock waits on Tang (WAITING_TANG, REFUSED_TANG), else ("", "")."""
        with self._lock:
            return self._status

    def on_snapshot(self, old: Snapshot | None, new: Snapshot) -> None:
        """Start an unlock when an agent we have not unlocked yet answers."""
        if self._config.agent.unlock == "none" or not new.agent_up:
            return
        if new.agent_pid is None or new.agent_pid == self._unlocked_pid:
            return
        self._unlocked_pid = new.agent_pid
        self._request()

    def on_reload(self, config: Config) -> None:
        """Take the new settings; unlock at once if the unlock method or its keys just changed."""
        with self._lock:
            old, self._config = self._config.agent, config
        new = config.agent
        if new.unlock != "none" and (old.unlock != new.unlock or old.keys != new.keys):
            self._request()

    def close(self) -> None:
        """Stop retrying; wait briefly for an unlock in progress (its children have timeouts)."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(CLOSE_WAIT_SECONDS)

    def _request(self) -> None:
        with self._lock:
            self._pending = True
            self._wake.set()
            if self._thread is not None:
                return  # the running worker picks the request up
            self._thread = threading.Thread(
                target=self._work, name="unattended-unlock", daemon=True
            )
            self._thread.start()

    def _work(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            with self._lock:
                if not self._pending or self._stop.is_set():
                    self._thread = None
                    return
                self._pending = False
                self._wake.clear()
                config = self._config
            status = self._attempt(config)
            if status[0] != WAITING_TANG:
                delay = RETRY_FIRST_SECONDS
                continue
            # No Tang answers: try again after the back-off, or at once on a new request.
            self._wake.wait(delay)
            delay = min(2 * delay, RETRY_MAX_SECONDS)
            with self._lock:
                self._pending = True

    def _attempt(self, config: Config) -> tuple[str, str]:
        try:
            status = waiting_status(self._unlock(config))
        except Exception:
            logger.exception("unattended unlock failed unexpectedly")
            status = ("", "")
        with self._lock:
            old, self._status = self._status, status
        if status != old and status[0] == WAITING_TANG:
            logger.warning(
                "unattended unlock waits: %s; retrying (ssh-add by hand works)", status[1]
            )
        elif status != old and old[0] == WAITING_TANG:
            logger.info("unattended unlock: Tang answers again")
        return status
