"""The supervisor's view of whether backups can authenticate, beyond "the agent lists a key".

Each poll combines the listing probe with the signing probe and the expected expiry of keys
under agent.lifetime_seconds, and has readiness judge them. Signing runs only when the keys
change or agent.sign_interval_seconds pass: at every poll it would cost a round trip per key
(and, for a confirm key with a working askpass, a dialog each time).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from backuppc_agent.agent import certs, readiness
from backuppc_agent.agent.probe import ProbeResult
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.agent.readiness import Readiness
from backuppc_agent.agent.signing import SignChecks, sign_keys
from backuppc_agent.config import AgentConfig

logger = logging.getLogger(__name__)

#: How soon to sign again while a key that counts does not sign.
RETRY_SECONDS = 5.0


class AuthWatch:
    """Judge each probe: sign when due, follow key lifetimes."""

    def __init__(
        self,
        config: AgentConfig,
        sign: Callable[..., SignChecks] = sign_keys,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.lifetimes = certs.LifetimeTracker()
        self._sign = sign
        self._clock = clock
        self._wall = wall
        self._signed: tuple[Identity, ...] | None = None
        self._checks: SignChecks = {}
        self._signed_at = 0.0
        self._identities: tuple[Identity, ...] = ()
        self._fingerprints: tuple[str, ...] = ()

    def assess(self, result: ProbeResult) -> Readiness:
        cfg = self.config
        now = self._wall()
        if result.identities != self._identities:  # hashing 10,000 keys at every poll is felt
            self._identities, self._fingerprints = result.identities, result.fingerprints
        vanished = self._observe(self._fingerprints, now) if result.answered else None
        lifetimes = self.lifetimes.expiries(cfg.lifetime_seconds)
        fps, sign = self._fingerprints, self._checks_of
        # Signed also with no keys: the next key to appear is signed at once.
        return readiness.assess(cfg, result, fps, sign, now, lifetimes, vanished, always_sign=True)

    def _checks_of(self, keys: tuple[Identity, ...]) -> SignChecks:
        """The sign checks of ``keys`` (those that count), fresh or from the last round."""
        cfg = self.config
        now = self._clock()
        interval = cfg.sign_interval_seconds
        if any(not check.ok for check in self._checks.values()):
            # A refused key may be re-added without -c: the list does not change, so retry soon.
            interval = min(interval, RETRY_SECONDS)
        if keys != self._signed or now - self._signed_at >= interval:
            self._checks = self._sign(cfg.socket, keys, cfg.probe_timeout_seconds)
            self._signed, self._signed_at = keys, now
        return self._checks

    def _observe(self, fingerprints: Sequence[str], now: float) -> str | None:
        """Follow key lifetimes; return why keys vanished if they expired (else None)."""
        cfg = self.config
        slack = 2 * cfg.poll_seconds + 1.0
        new = self.lifetimes.observe(fingerprints, cfg.lifetime_seconds, now, slack)
        if new:
            logger.info(
                "%d key(s) appeared; with agent.lifetime_seconds = %d they expire at %s",
                len(new),
                cfg.lifetime_seconds,
                certs.local_stamp(now + cfg.lifetime_seconds),
            )
        return self.lifetimes.note
