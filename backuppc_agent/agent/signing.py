"""The signing probe: ask the agent to sign a random challenge with each key that counts.

A listed key may still not log in (``ssh-add -c`` with nobody to confirm, a FIDO key waiting
for a touch): only a sign request tells. One connection and one deadline serve all keys.
Signatures are parsed (format, blob, the algorithm the key type implies), not verified.
"""

from __future__ import annotations

import enum
import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import unixsock
from backuppc_agent.agent import protocol
from backuppc_agent.agent.certs import CERT_SUFFIX
from backuppc_agent.agent.probe import connect
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.unixsock import Failure

#: Not an SSH userauth blob: those start with a 32- or 64-byte session id length.
_CHALLENGE_PREFIX = b"backuppc-agent sign probe\0"
_SIGN_REPLY_LENGTH = functools.partial(protocol.reply_length, limit=protocol.MAX_SIGN_REPLY_BYTES)


class Signed(enum.Enum):
    """How a sign request ended when the agent answered it in time, as a sign reply."""

    OK = "ok"
    REFUSED = "refused"  # FAILURE: confirm (ssh-add -c) with nobody to confirm, or restricted
    TOUCH = "touch"  # FAILURE from a FIDO (sk-*) key: it needs a touch at each signature


_WHY: dict[Signed | Failure, str] = {
    Signed.REFUSED: "agent refused to sign: confirmation required (added with ssh-add -c, "
    "and no askpass or display to confirm) or the key is restricted (ssh-add -h)",
    Signed.TOUCH: "needs a touch: a FIDO (sk-*) key cannot sign unattended",
    Failure.TIMEOUT: "agent did not sign in time",
    Failure.BAD_REPLY: "agent answered the sign request with garbage",
}
#: identities_unusable{reason} of a socket failure: a timeout, garbage or (the rest) an error.
_FAILURE_LABELS = {Failure.TIMEOUT: Failure.TIMEOUT.value, Failure.BAD_REPLY: "garbage"}
#: Every label of a key that does not sign, in the order the metric exports them.
LABELS = (Signed.REFUSED.value, Signed.TOUCH.value, *_FAILURE_LABELS.values(), Failure.ERROR.value)


@dataclass(frozen=True, slots=True)
class SignCheck:
    """The outcome of one key's sign request (a signature that does not fit is a BAD_REPLY)."""

    status: Signed | Failure
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the agent returned a well-formed signature."""
        return self.status is Signed.OK

    @property
    def reason(self) -> str:
        """One phrase saying why the key cannot sign ("" if it can)."""
        if self.ok:
            return ""
        why = _WHY.get(self.status, "sign request failed")
        return why + (f" ({self.detail})" if self.detail else "")

    @property
    def label(self) -> str:
        """The status as ``backuppc_agent_identities_unusable{reason}`` names it."""
        if isinstance(self.status, Signed):
            return self.status.value
        return _FAILURE_LABELS.get(self.status, Failure.ERROR.value)


SignChecks = dict[str, SignCheck]


def sign_keys(
    path: Path, keys: Sequence[Identity], timeout: float, expected_uid: int | None = None
) -> SignChecks:
    """Fingerprint -> SignCheck of each key signing a challenge at ``path`` within ``timeout``.

    Keys left when the agent stops answering get the status of the key that stopped it.
    """
    checks: SignChecks = {}
    if not keys:
        return checks
    try:
        with connect(path, time.monotonic() + timeout, expected_uid) as conn:
            for key in keys:
                check = checks[key.fingerprint] = _sign_one(conn, key)
                if isinstance(check.status, Failure):
                    break  # the connection is out of step or dead: the rest share this fate
    except unixsock.TransportError as err:  # the connect itself failed
        check = _failed(err)
    return checks | {key.fingerprint: check for key in keys if key.fingerprint not in checks}


def _sign_one(conn: unixsock.Connection, key: Identity) -> SignCheck:
    """Send one sign request on ``conn`` and judge the reply."""
    key_type = key.key_type
    flags = protocol.SSH_AGENT_RSA_SHA2_256 if _base_type(key_type) == "ssh-rsa" else 0
    request = protocol.sign_request(key.blob, _CHALLENGE_PREFIX + os.urandom(32), flags)
    try:
        signature = conn.exchange(request, _SIGN_REPLY_LENGTH, protocol.parse_sign_response)
    except unixsock.TransportError as err:
        return _failed(err)
    if signature is None:
        touch = _base_type(key_type).startswith("sk-")
        return SignCheck(Signed.TOUCH if touch else Signed.REFUSED)
    return judge_signature(key_type, *signature)


def _failed(err: unixsock.TransportError) -> SignCheck:
    return SignCheck(err.failure, "" if err.failure is Failure.TIMEOUT else err.detail)


def judge_signature(key_type: str, sig_format: str, sig_blob: bytes) -> SignCheck:
    """OK if the signature's algorithm fits the key type (and an ed25519 one is 64 bytes)."""
    base = _base_type(key_type)
    expected = {"ssh-rsa": ("rsa-sha2-256", "rsa-sha2-512", "ssh-rsa")}.get(base, (base,))
    if sig_format not in expected:
        return SignCheck(
            Failure.BAD_REPLY, f"a {sig_format[:64]!r} signature for a {base[:64]} key"
        )
    if base == "ssh-ed25519" and len(sig_blob) != 64:
        return SignCheck(Failure.BAD_REPLY, f"a {len(sig_blob)}-byte ed25519 signature")
    return SignCheck(Signed.OK)


def _base_type(key_type: str) -> str:
    return key_type.removesuffix(CERT_SUFFIX)
