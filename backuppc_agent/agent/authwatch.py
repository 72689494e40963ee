"""The supervisor's view of whether backups can authenticate, beyond "the agent lists a key".

Each poll it combines the listing probe with the signing probe (re-run only
when the keys change or agent.sign_interval_seconds pass) and the expected
expiry of keys under agent.lifetime_seconds, and has readiness judge them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from backuppc_agent.agent import certs, readiness
from backuppc_agent.agent.probe import ProbeResult
from backuppc_agent.agent.readiness import Readiness
from backuppc_agent.agent.signing import SignChecks, SignSchedule, sign_keys
from backuppc_agent.config import AgentConfig

logger = logging.getLogger(__name__)


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
        self._schedule = SignSchedule(config.sign_interval_seconds, sign, clock)
        self._wall = wall
        self.lifetimes = certs.LifetimeTracker()

    def assess(self, result: ProbeResult, fingerprints: Sequence[str]) -> Readiness:
        """The verdict on one probe (``fingerprints``: its keys')."""
        cfg = self.config
        self._schedule.interval = cfg.sign_interval_seconds
        now = self._wall()
        keys = readiness.parse_keys(result.identities, fingerprints)
        ignored = readiness.not_counted(cfg)
        checks: SignChecks | None = None
        vanished = None
        if result.answered:  # also with no keys: the next key to appear is signed at once
            wanted = readiness.to_sign(keys, cfg.required_keys, ignored)
            checks = self._schedule.checks(cfg.socket, wanted, cfg.probe_timeout_seconds)
            vanished = self._observe(fingerprints, now)
        lifetimes = self.lifetimes.expiries(cfg.lifetime_seconds)
        return readiness.judge(
            result, keys, cfg.required_keys, checks, now, lifetimes, vanished, ignored
        )

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
