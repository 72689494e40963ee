"""When identities stop working: certificate validity and the agent's key lifetime.

A certificate carries its own ``valid_before``. A key added to an agent started
with ``-t SECONDS`` (agent.lifetime_seconds) vanishes that long after it was
added; the agent protocol does not say when a key was added, so the expected
expiry counts from when the supervisor first saw the key. A per-key
``ssh-add -t`` lifetime is invisible in the protocol altogether.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

#: Expiries kept in the published state (the earliest); the rest are summed up.
MAX_PUBLISHED = 100
CERTIFICATE = "certificate"
LIFETIME = "lifetime"

#: (fingerprint, Unix time it expires, "certificate" or "lifetime")
Expiry = tuple[str, float, str]


def first_expiry(
    expiries: Iterable[Expiry], counting: Sequence[str], required: bool
) -> float | None:
    """When backups stop authenticating, as far as expiries tell; None if never.

    ``counting`` are the fingerprints of the keys that count. With required
    keys: the first of them to expire. Without: the last to expire (any key
    will do), or None if one of them never expires.
    """
    soonest = {fingerprint: when for fingerprint, (when, _) in by_fingerprint(expiries).items()}
    if required:
        times = [soonest[fp] for fp in counting if fp in soonest]
        return min(times) if times else None
    if not counting or any(fp not in soonest for fp in counting):
        return None
    return max(soonest[fp] for fp in counting)


def published(expiries: Sequence[Expiry]) -> tuple[Expiry, ...]:
    """The earliest MAX_PUBLISHED expiries, soonest first."""
    return tuple(sorted(expiries, key=lambda item: item[1])[:MAX_PUBLISHED])


class LifetimeTracker:
    """Expected expiries of keys under agent.lifetime_seconds, and why keys vanished."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self.note: str | None = None

    def seed(self, expiries: Iterable[Expiry], lifetime: int) -> None:
        """Take over what an earlier supervisor saw (its published lifetime expiries)."""
        for fingerprint, when, source in expiries:
            if source == LIFETIME and lifetime > 0:
                self._seen[fingerprint] = when - lifetime

    def observe(
        self, fingerprints: Sequence[str], lifetime: int, now: float, slack: float
    ) -> list[str]:
        """Note keys that appeared and keys that vanished at (about) their deadline.

        Returns the fingerprints that appeared (their expected expiry: now + lifetime).
        """
        if lifetime <= 0:
            self._seen.clear()
            self.note = None
            return []
        current = set(fingerprints)
        gone = [fp for fp in self._seen if fp not in current]
        expired = [fp for fp in gone if now >= self._seen[fp] + lifetime - slack]
        if expired:
            deadline = max(self._seen[fp] for fp in expired) + lifetime
            count = len(expired)
            self.note = (
                f"{count} key{'s' if count != 1 else ''} expired at {_stamp(deadline)} "
                f"(agent.lifetime_seconds = {lifetime}); run ssh-add again"
            )
        for fingerprint in gone:
            del self._seen[fingerprint]
        new = [fp for fp in current if fp not in self._seen]
        if new:
            self.note = None
        for fingerprint in new:
            self._seen[fingerprint] = now
        return new

    def expiries(self, lifetime: int) -> list[Expiry]:
        """Expected expiry of every key seen, from when it was first seen."""
        return [(fp, seen + lifetime, LIFETIME) for fp, seen in self._seen.items()]


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def by_fingerprint(expiries: Iterable[Expiry]) -> Mapping[str, tuple[float, str]]:
    """fingerprint -> (soonest expiry, its source)."""
    found: dict[str, tuple[float, str]] = {}
    for fingerprint, when, source in expiries:
        if fingerprint not in found or when < found[fingerprint][0]:
            found[fingerprint] = (when, source)
    return found
