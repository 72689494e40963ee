"""The ssh-agent wire protocol, as pure functions (bytes in, values out).

Frames are uint32 big-endian length, one type byte, payload (PROTOCOL.agent).
Everything read from the socket is untrusted: lengths and counts are checked
against the bytes actually present before anything is allocated.
"""

from __future__ import annotations

import binascii
import hashlib
import struct
from dataclasses import dataclass

from backuppc_agent.errors import ProtocolError

SSH_AGENT_FAILURE = 5
SSH_AGENTC_REQUEST_IDENTITIES = 11
SSH_AGENT_IDENTITIES_ANSWER = 12
SSH_AGENTC_SIGN_REQUEST = 13
SSH_AGENT_SIGN_RESPONSE = 14

#: ssh-add refuses replies over 256 KiB; 10,000 ed25519 keys need ~1 MiB, so allow
#: more, but bound it: a hostile peer must not make us allocate gigabytes.
MAX_REPLY_BYTES = 16 * 1024 * 1024
#: A signature is a few hundred bytes (RSA 16384: 2 KiB); a sign reply needs far less.
MAX_SIGN_REPLY_BYTES = 64 * 1024
#: Ask RSA keys for rsa-sha2-256 signatures, as ssh does (PROTOCOL.agent flags).
SSH_AGENT_RSA_SHA2_256 = 2
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Identity:
    """One key the agent holds: its public blob and comment."""

    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint exactly as ``ssh-add -l`` prints it."""
        return fingerprint(self.blob)

    @property
    def key_type(self) -> str:
        """The key's type name (e.g. ``ssh-ed25519``), or "?" if the blob is malformed."""
        try:
            name, _ = _string(self.blob, 0)
        except ProtocolError:
            return "?"
        return name.decode("ascii", "replace")


def fingerprint(blob: bytes) -> str:
    """Return ``SHA256:<unpadded base64>`` of a public key blob."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + binascii.b2a_base64(digest, newline=False).decode("ascii").rstrip("=")


def frame(msg_type: int, payload: bytes = b"") -> bytes:
    """Wrap a message type and payload in the length-prefixed frame."""
    return _U32.pack(len(payload) + 1) + bytes((msg_type,)) + payload


def encode_string(data: bytes) -> bytes:
    """Encode an SSH ``string``: uint32 length then the bytes."""
    return _U32.pack(len(data)) + data


def request_identities() -> bytes:
    """The frame that asks the agent for its identities."""
    return frame(SSH_AGENTC_REQUEST_IDENTITIES)


def sign_request(blob: bytes, data: bytes, flags: int = 0) -> bytes:
    """The frame that asks the agent to sign ``data`` with the key ``blob``."""
    payload = encode_string(blob) + encode_string(data) + _U32.pack(flags)
    return frame(SSH_AGENTC_SIGN_REQUEST, payload)


def parse_sign_response(body: bytes | memoryview) -> tuple[str, bytes] | None:
    """Parse a reply body to SIGN_REQUEST: (signature format, signature blob).

    Returns None when the agent answered FAILURE (it refused to sign). Raises
    ProtocolError on any other type, a malformed signature or trailing bytes.
    The signature is only parsed, not verified (that would need a crypto library).
    """
    body = bytes(body)
    if body[:1] == bytes((SSH_AGENT_FAILURE,)) and len(body) == 1:
        return None
    if body[:1] != bytes((SSH_AGENT_SIGN_RESPONSE,)):
        kind = body[0] if body else "empty"
        raise ProtocolError(f"agent answered a sign request with message type {kind}, expected 14")
    signature, offset = _string(body, 1)
    if offset != len(body):
        raise ProtocolError(f"sign reply has {len(body) - offset} trailing bytes")
    name, inner = _string(signature, 0)
    blob, inner = _string(signature, inner)
    if inner != len(signature) or not blob or not _is_name(name):
        raise ProtocolError("agent sent a malformed signature")
    return name.decode("ascii"), blob


def _is_name(name: bytes) -> bool:
    """An SSH algorithm name: 1-64 printable ASCII characters, no spaces or commas."""
    return 0 < len(name) <= 64 and all(0x21 <= char <= 0x7E and char != 0x2C for char in name)


def reply_length(header: bytes | memoryview, limit: int = MAX_REPLY_BYTES) -> int:
    """Decode a 4-byte frame header; raise ProtocolError if it is empty or too large."""
    length: int = _U32.unpack(header)[0]
    if length == 0:
        raise ProtocolError("agent sent an empty frame")
    if length > limit:
        raise ProtocolError(f"agent announced a {length}-byte reply (limit {limit})")
    return length


def parse_identities(body: bytes | memoryview) -> tuple[Identity, ...]:
    """Parse a reply body (type byte + payload) to REQUEST_IDENTITIES.

    Raises ProtocolError on a wrong type, a count that does not fit the bytes,
    truncated strings or trailing garbage.
    """
    body = bytes(body)
    if not body:
        raise ProtocolError("agent sent an empty reply")
    if body[0] == SSH_AGENT_FAILURE:
        raise ProtocolError("agent refused to list identities")
    if body[0] != SSH_AGENT_IDENTITIES_ANSWER:
        raise ProtocolError(f"agent answered with message type {body[0]}, expected 12")
    count, offset = _uint32(body, 1)
    # Each identity takes at least 8 bytes (two empty strings): a hostile count
    # such as 2**32-1 fails here, before any list of that size exists.
    if count > (len(body) - offset) // 8:
        raise ProtocolError(f"agent claims {count} identities in {len(body)} bytes")
    identities = []
    for _ in range(count):
        blob, offset = _string(body, offset)
        comment, offset = _string(body, offset)
        identities.append(Identity(blob, comment.decode("utf-8", "replace")))
    if offset != len(body):
        raise ProtocolError(f"agent reply has {len(body) - offset} trailing bytes")
    return tuple(identities)


def _uint32(data: bytes, offset: int) -> tuple[int, int]:
    if offset + 4 > len(data):
        raise ProtocolError("agent reply truncated")
    value: int = _U32.unpack_from(data, offset)[0]
    return value, offset + 4


def _string(data: bytes, offset: int) -> tuple[bytes, int]:
    length, offset = _uint32(data, offset)
    end = offset + length
    if end > len(data):
        raise ProtocolError("agent reply truncated inside a string")
    return data[offset:end], end
