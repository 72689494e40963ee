"""When identities stop working: OpenSSH certificates read from key blobs, and key lifetimes.

Certificates (PROTOCOL.certkeys) come from the agent socket: every length is checked, nothing
verified (sshd checks the CA). Under ``ssh-agent -t`` a key vanishes that long after it was
added; the protocol does not say when, so its expiry counts from when we first saw it
(a per-key ``ssh-add -t`` stays invisible).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from backuppc_agent.agent import protocol
from backuppc_agent.agent.protocol import Identity, Reader, encode_string
from backuppc_agent.errors import ProtocolError

CERT_SUFFIX = "-cert-v01@openssh.com"
#: valid_before of a certificate that never expires.
FOREVER = 2**64 - 1
MAX_KEY_ID_CHARS = 200

#: How many public-key fields (SSH strings or mpints) each certified key type carries.
_KEY_FIELDS = {
    "ssh-rsa": 2,
    "ssh-dss": 4,
    "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "ssh-ed25519": 1,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,
    "sk-ssh-ed25519@openssh.com": 2,
}


class Validity(enum.Enum):
    """Where ``now`` falls in a certificate's validity window (values: metric labels)."""

    VALID = "valid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"


@dataclass(frozen=True, slots=True)
class Certificate:
    """What readiness needs from a certificate: its name and when it is valid."""

    key_id: str
    valid_after: int
    valid_before: int
    key_blob: bytes = b""  # the certified key's own blob: what ``ssh-add -l`` fingerprints

    @property
    def expires(self) -> float | None:
        """Unix time it stops being valid, or None if it never does."""
        return None if self.valid_before == FOREVER else float(self.valid_before)

    def validity(self, now: float) -> Validity:
        """Whether the certificate is valid at ``now`` (Unix time)."""
        if now < self.valid_after:
            return Validity.NOT_YET_VALID
        if self.valid_before != FOREVER and now >= self.valid_before:
            return Validity.EXPIRED
        return Validity.VALID

    def validity_problem(self, now: float) -> str | None:
        """Why the certificate is not valid at ``now`` (Unix time), or None if it is."""
        validity = self.validity(now)
        if validity is Validity.NOT_YET_VALID:
            return f"certificate {self.key_id!r} not valid until {_stamp(self.valid_after)}"
        if validity is Validity.EXPIRED:
            return f"certificate {self.key_id!r} expired at {_stamp(self.valid_before)}"
        return None


def is_certificate(key_type: str) -> bool:
    """True for an OpenSSH certificate type name."""
    return key_type.endswith(CERT_SUFFIX)


def parse_certificate(blob: bytes) -> Certificate | None:
    """Parse a key blob; None if it is no certificate.

    Raises ProtocolError for a malformed certificate or one of a key type we do not know.
    """
    reader = Reader(blob, "certificate")
    type_name = reader.text()
    if not is_certificate(type_name):
        return None
    base = type_name.removesuffix(CERT_SUFFIX)
    fields = _KEY_FIELDS.get(base)
    if fields is None:
        raise ProtocolError(f"unknown certificate key type {type_name[:80]!r}")
    reader.skip_strings(1)  # the nonce
    key_fields = reader.skip_strings(fields)
    reader.uint64()  # serial
    reader.uint32()  # certificate type
    key_id = reader.text()[:MAX_KEY_ID_CHARS]
    reader.skip_strings(1)  # principals
    valid_after, valid_before = reader.uint64(), reader.uint64()
    # critical options, extensions, reserved, signature key, signature
    reader.skip_strings(5)
    reader.end()
    key_blob = encode_string(base.encode("ascii")) + key_fields
    return Certificate(key_id, valid_after, valid_before, key_blob)


@dataclass(frozen=True, slots=True)
class Key:
    """One identity the agent lists, its certificate (if it is one) parsed once."""

    identity: Identity
    fingerprint: str
    listed: str  # the fingerprint ``ssh-add -l`` shows: for a certificate, its key's
    cert: Certificate | None = None
    unreadable: str = ""  # why a certificate blob does not parse


def parse_keys(identities: Sequence[Identity], fingerprints: Sequence[str]) -> tuple[Key, ...]:
    """The identities (``fingerprints``: theirs, same order) with their certificates parsed."""
    return tuple(_key(identity, fp) for identity, fp in zip(identities, fingerprints, strict=True))


def _key(identity: Identity, fingerprint: str) -> Key:
    if not is_certificate(identity.key_type):
        return Key(identity, fingerprint, fingerprint)
    try:
        cert = parse_certificate(identity.blob)
    except ProtocolError as err:
        return Key(identity, fingerprint, fingerprint, unreadable=str(err))
    listed = protocol.fingerprint(cert.key_blob) if cert else fingerprint
    return Key(identity, fingerprint, listed, cert)


def _stamp(epoch: int) -> str:
    if epoch >= 2**40:
        return f"epoch {epoch}"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


#: Expiries kept in the published state (the earliest); the rest are summed up.
MAX_PUBLISHED = 100
CERTIFICATE = "certificate"
LIFETIME = "lifetime"

#: (fingerprint, Unix time it expires, "certificate" or "lifetime")
Expiry = tuple[str, float, str]


def first_expiry(
    expiries: Iterable[Expiry], counting: Sequence[str], required: bool
) -> float | None:
    """When backups stop authenticating: the first of the ``counting`` keys to expire when
    ``required``, else (any key will do) the last; None if never.
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
        """Note keys that appeared and that vanished near their deadline; return the new ones."""
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
                f"{count} key{'s' if count != 1 else ''} expired at {local_stamp(deadline)} "
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


def local_stamp(epoch: float) -> str:
    """``epoch`` as local time, for log lines and reasons about key lifetimes."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def by_fingerprint(expiries: Iterable[Expiry]) -> Mapping[str, tuple[float, str]]:
    """fingerprint -> (soonest expiry, its source)."""
    found: dict[str, tuple[float, str]] = {}
    for fingerprint, when, source in expiries:
        if fingerprint not in found or when < found[fingerprint][0]:
            found[fingerprint] = (when, source)
    return found
