"""The supervisor's view of whether backups can authenticate, beyond "the agent lists a key".

Each poll it combines the listing probe with the signing probe (re-run only
when the keys change or agent.sign_interval_seconds pass), certificate
validity and the expected expiry of keys under agent.lifetime_seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from backuppc_agent.agent import expiry, readiness
from backuppc_agent.agent.certs import is_certificate, parse_certificate
from backuppc_agent.agent.probe import ProbeResult
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.agent.signing import (
    SignCheck,
    SignChecks,
    SignSchedule,
    counting_keys,
    sign_keys,
)
from backuppc_agent.config import AgentConfig
from backuppc_agent.errors import ProtocolError
from backuppc_agent.state import State

logger = logging.getLogger(__name__)

#: Unusable keys kept in the published state.
MAX_UNUSABLE = 100


@dataclass(frozen=True, slots=True)
class AuthView:
    """Readiness with the facts behind it, for the snapshot."""

    state: State
    reason: str
    expiries: tuple[expiry.Expiry, ...] = ()
    expires: float | None = None
    unusable: tuple[tuple[str, str], ...] = ()


class AuthWatch:
    """Assess each probe: sign when due, check certificates, follow key lifetimes."""

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
        self.lifetimes = expiry.LifetimeTracker()

    def assess(self, result: ProbeResult, fingerprints: Sequence[str]) -> AuthView:
        """State, reason, expiries and unusable keys for one probe (fingerprints: its keys')."""
        cfg = self.config
        self._schedule.interval = cfg.sign_interval_seconds
        now = self._wall()
        checks: SignChecks | None = None
        if result.answered:  # also with no keys: the next key to appear is signed at once
            timeout = cfg.probe_timeout_seconds
            checks = self._schedule.checks(
                cfg.socket, result.identities, fingerprints, cfg.required_keys, timeout
            )
        state, reason = readiness.evaluate(result, cfg.required_keys, checks, now, fingerprints)
        if result.answered:
            slack = 2 * cfg.poll_seconds + 1.0
            new = self.lifetimes.observe(fingerprints, cfg.lifetime_seconds, now, slack)
            if new:
                logger.info(
                    "%d key(s) appeared; with agent.lifetime_seconds = %d they expire at %s",
                    len(new),
                    cfg.lifetime_seconds,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now + cfg.lifetime_seconds)),
                )
            if state is State.WAITING and self.lifetimes.note:
                reason = self.lifetimes.note
        found = expiry.certificate_expiries(result.identities, fingerprints)
        found += self.lifetimes.expiries(cfg.lifetime_seconds)
        keys = counting_keys(result.identities, cfg.required_keys, fingerprints)
        counting = [key.fingerprint for key in keys]
        return AuthView(
            state,
            reason,
            expiry.published(found),
            expiry.first_expiry(found, counting, bool(cfg.required_keys)),
            unusable_keys(keys, checks or {}, now),
        )


def unusable_keys(
    keys: Sequence[Identity], checks: Mapping[str, SignCheck], now: float
) -> tuple[tuple[str, str], ...]:
    """(fingerprint, why) for the counting keys that cannot be used, at most MAX_UNUSABLE."""
    found = {fp: check.status.value for fp, check in checks.items() if not check.ok}
    for identity in keys:
        if len(found) >= MAX_UNUSABLE:
            break
        if not is_certificate(identity.key_type):
            continue
        try:
            cert = parse_certificate(identity.blob)
        except ProtocolError:
            found[identity.fingerprint] = "garbage"
            continue
        if cert is not None and cert.validity(now) != "valid":
            found[identity.fingerprint] = cert.validity(now)
    return tuple(sorted(found.items()))[:MAX_UNUSABLE]
