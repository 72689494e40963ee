"""SSH's wire encoding (RFC 4251, section 5) as the agent and mux protocols share it.

Both put a uint32 big-endian length before every string and every frame, and read
a frame's length from an untrusted peer: it is bounded before anything is allocated.
"""

from __future__ import annotations

import struct

from backuppc_agent.errors import ProtocolError

UINT32 = struct.Struct(">I")


def encode_string(data: bytes) -> bytes:
    """Encode an SSH ``string`` (a frame is one too): uint32 length then the bytes."""
    return UINT32.pack(len(data)) + data


def frame_length(header: bytes | memoryview, peer: str, minimum: int, limit: int) -> int:
    """Decode a 4-byte frame header; raise ProtocolError if under ``minimum`` or over ``limit``."""
    length: int = UINT32.unpack(header)[0]
    if length < minimum:
        raise ProtocolError(f"{peer} sent a {length}-byte frame: too short")
    if length > limit:
        raise ProtocolError(f"{peer} announced a {length}-byte reply: it exceeds {limit}")
    return length
