"""OpenSSH certificates (``*-cert-v01@openssh.com``) read from key blobs, as pure functions.

The layout is PROTOCOL.certkeys: type name, nonce, the key's own public fields
(how many depends on the type), serial, type, key id, principals, validity,
critical options, extensions, reserved, signature key, signature. Readiness
needs the key id, the validity and the certified key; the rest is skipped. The
blob comes from the agent socket and is untrusted: every length is checked
against the bytes present, and nothing is verified (the CA's signature would
need a crypto library; sshd checks it at login anyway).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from backuppc_agent.agent.protocol import Reader, encode_string
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
    #: the certified key's own public blob: what ``ssh-add -l`` fingerprints
    key_blob: bytes = b""

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

    Raises ProtocolError if it claims to be a certificate but is malformed or of
    a key type this parser does not know.
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


def _stamp(epoch: int) -> str:
    import time  # noqa: PLC0415  (only for the message)

    if epoch >= 2**40:
        return f"epoch {epoch}"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
