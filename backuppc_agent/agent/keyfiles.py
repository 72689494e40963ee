"""Fingerprints of key files, without their passphrase or a subprocess: from ``KEY.pub``, else
from the unencrypted header of an OpenSSH-format private key (``openssh-key-v1``).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from backuppc_agent import paths
from backuppc_agent.agent import protocol
from backuppc_agent.errors import ProtocolError

_MAGIC = b"openssh-key-v1\0"
_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_END = "-----END OPENSSH PRIVATE KEY-----"
MAX_KEY_FILE_BYTES = 1 << 20


def decode_blob(word: str) -> bytes | None:
    """The blob of a key line's base64 word, or None if it is not base64."""
    try:
        return base64.b64decode(word, validate=True)
    except (binascii.Error, ValueError):
        return None


def private_key_blob(text: str) -> bytes | None:
    """The first public key blob in an OpenSSH private key's header, or None."""
    start, end = text.find(_BEGIN), text.find(_END)
    if start < 0 or end < start:
        return None
    raw = decode_blob("".join(text[start + len(_BEGIN) : end].split()))
    if raw is None or not raw.startswith(_MAGIC):
        return None
    header = protocol.Reader(raw, "private key", len(_MAGIC))
    try:
        header.skip_strings(3)  # ciphername, kdfname, kdfoptions
        count = header.uint32()
        blob = header.string()
    except ProtocolError:
        return None
    return blob if count >= 1 else None


def key_fingerprint(key: Path) -> str | None:
    """The SHA256 fingerprint of key file ``key``, or None if it cannot be read."""
    fields = paths.read_or_empty(f"{key}.pub", MAX_KEY_FILE_BYTES).split()
    blob = decode_blob(fields[1]) if len(fields) >= 2 else None  # TYPE BASE64 [COMMENT]
    if blob is None:
        blob = private_key_blob(paths.read_or_empty(key, MAX_KEY_FILE_BYTES))
    return protocol.fingerprint(blob) if blob else None
