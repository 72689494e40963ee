"""The ssh-agent wire protocol (PROTOCOL.agent), as pure functions: bytes in, values out.

Everything read from the socket is untrusted: ``Reader`` checks lengths and counts against
the bytes present before anything is allocated.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass

from backuppc_agent.errors import ProtocolError
from backuppc_agent.ssh import wire

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
#: Strings in agent messages and key blobs are SSH strings (certs and fakes build them here).
encode_string = wire.encode_string


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
        return key_type(self.blob) or "?"


def key_type(blob: bytes) -> str | None:
    """The type name a public key blob starts with, or None if it is malformed."""
    try:
        name = Reader(blob, "key blob").string()
    except ProtocolError:
        return None
    return name.decode("ascii") if _is_name(name) else None


def fingerprint(blob: bytes) -> str:
    """Return ``SHA256:<unpadded base64>`` of a public key blob."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + binascii.b2a_base64(digest, newline=False).decode("ascii").rstrip("=")


def frame(msg_type: int, payload: bytes = b"") -> bytes:
    """Wrap a message type and payload in the length-prefixed frame."""
    return encode_string(bytes((msg_type,)) + payload)


#: The frame that asks the agent for its identities.
REQUEST_IDENTITIES = frame(SSH_AGENTC_REQUEST_IDENTITIES)


def sign_request(blob: bytes, data: bytes, flags: int = 0) -> bytes:
    """The frame that asks the agent to sign ``data`` with the key ``blob``."""
    payload = encode_string(blob) + encode_string(data) + wire.UINT32.pack(flags)
    return frame(SSH_AGENTC_SIGN_REQUEST, payload)


def parse_sign_response(body: bytes | memoryview) -> tuple[str, bytes] | None:
    """(signature format, blob) of a SIGN_REQUEST reply body, not verified; None on FAILURE.

    Raises ProtocolError on any other type, a malformed signature or trailing bytes.
    """
    body = bytes(body)
    if body[:1] == bytes((SSH_AGENT_FAILURE,)) and len(body) == 1:
        return None
    if body[:1] != bytes((SSH_AGENT_SIGN_RESPONSE,)):
        kind = body[0] if body else "empty"
        raise ProtocolError(f"agent answered a sign request with message type {kind}, expected 14")
    reply = Reader(body, "sign reply", 1)
    signature = reply.string()
    reply.end()
    inner = Reader(signature, "signature")
    name, blob = inner.string(), inner.string()
    if inner.remaining or not blob or not _is_name(name):
        raise ProtocolError("agent sent a malformed signature")
    return name.decode("ascii"), blob


def _is_name(name: bytes) -> bool:
    """An SSH algorithm name: 1-64 printable ASCII characters, no spaces or commas."""
    return 0 < len(name) <= 64 and all(0x21 <= char <= 0x7E and char != 0x2C for char in name)


def reply_length(header: bytes | memoryview, limit: int = MAX_REPLY_BYTES) -> int:
    """Decode a 4-byte frame header; raise ProtocolError if it is empty or too large."""
    return wire.frame_length(header, "agent", 1, limit)


def parse_identities(body: bytes | memoryview) -> tuple[Identity, ...]:
    """Parse a REQUEST_IDENTITIES reply body; raise ProtocolError on anything malformed."""
    body = bytes(body)
    if not body:
        raise ProtocolError("agent sent an empty reply")
    if body[0] == SSH_AGENT_FAILURE:
        raise ProtocolError("agent refused to list identities")
    if body[0] != SSH_AGENT_IDENTITIES_ANSWER:
        raise ProtocolError(f"agent answered with message type {body[0]}, expected 12")
    reply = Reader(body, "agent reply", 1)
    count = reply.uint32()
    # Each identity takes at least 8 bytes (two empty strings): a hostile count
    # such as 2**32-1 fails here, before any list of that size exists.
    if count > reply.remaining // 8:
        raise ProtocolError(f"agent claims {count} identities in {len(body)} bytes")
    identities = []
    for _ in range(count):
        blob = reply.string()
        identities.append(Identity(blob, reply.text()))
    reply.end()
    return tuple(identities)


class Reader:
    """Bounds-checked reads of SSH wire types from one untrusted buffer.

    Raises ProtocolError naming ``what`` when a read runs past the end or ``end()`` finds more.
    """

    def __init__(self, data: bytes, what: str, offset: int = 0) -> None:
        self._data = data
        self._what = what
        self._offset = offset

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def _take(self, size: int) -> bytes:
        if size > self.remaining:
            raise ProtocolError(f"{self._what} truncated")
        chunk = self._data[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def uint32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def uint64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def string(self) -> bytes:
        return self._take(self.uint32())

    def text(self) -> str:
        return self.string().decode("utf-8", "replace")

    def skip_strings(self, count: int) -> bytes:
        """Skip ``count`` strings; return the raw bytes they took."""
        start = self._offset
        for _ in range(count):
            self.string()
        return self._data[start : self._offset]

    def end(self) -> None:
        if self.remaining:
            raise ProtocolError(f"{self._what} has {self.remaining} trailing bytes")
