"""OpenSSH's ControlMaster protocol (PROTOCOL.mux) as pure functions: bytes in, values out.

A frame is a uint32 big-endian length, then the payload: a uint32 message type first.
Both sides say hello (version 4) first. Everything read is untrusted: frames are
bounded and every decoder raises ProtocolError (one line) on anything unexpected.
"""

from __future__ import annotations

import struct

from backuppc_agent import names
from backuppc_agent.errors import ProtocolError
from backuppc_agent.ssh import wire
from backuppc_agent.ssh.wire import UINT32, encode_string

MUX_MSG_HELLO = 0x00000001
MUX_C_NEW_SESSION = 0x10000002
MUX_C_ALIVE_CHECK = 0x10000004
MUX_C_TERMINATE = 0x10000005
MUX_C_STOP_LISTENING = 0x10000009
MUX_S_OK = 0x80000001
MUX_S_PERMISSION_DENIED = 0x80000002
MUX_S_FAILURE = 0x80000003
MUX_S_ALIVE = 0x80000005
MUX_S_SESSION_OPENED = 0x80000006
MUX_VERSION = 4
#: Real replies are a few dozen bytes; a hostile length must not allocate gigabytes.
MAX_FRAME_BYTES = 64 * 1024
_NO_ESCAPE_CHAR = 0xFFFFFFFF


def encode(msg_type: int, *words: int) -> bytes:
    """Build one frame: length, type, then uint32 words."""
    return encode_string(UINT32.pack(msg_type) + b"".join(UINT32.pack(word) for word in words))


def encode_new_session(request_id: int, command: bytes) -> bytes:
    """A MUX_C_NEW_SESSION frame: no tty, X11, agent or subsystem, no escape character."""
    body = UINT32.pack(MUX_C_NEW_SESSION) + UINT32.pack(request_id) + encode_string(b"")
    body += UINT32.pack(0) * 4 + UINT32.pack(_NO_ESCAPE_CHAR) + encode_string(b"")
    return encode_string(body + encode_string(command))


def frame_length(header: bytes, limit: int = MAX_FRAME_BYTES) -> int:
    """Decode a 4-byte length; raise ProtocolError if it is too short (no type) or too large."""
    return wire.frame_length(header, "master", 4, limit)


def parse_words(body: bytes, count: int) -> tuple[int, ...]:
    """The first ``count`` uint32 words of a frame body; raise ProtocolError if short."""
    if len(body) < 4 * count:
        raise ProtocolError(f"mux reply of {len(body)} bytes is truncated")
    return struct.unpack_from(f">{count}I", body)


def parse_hello(body: bytes) -> int:
    """Return the master's protocol version; raise ProtocolError if it is not a hello."""
    version = _expect(body, MUX_MSG_HELLO, "mux hello", 2)[1]
    if version != MUX_VERSION:
        raise ProtocolError(f"master speaks mux version {version}, not {MUX_VERSION}")
    return int(version)


def parse_alive(body: bytes, request_id: int) -> int:
    """Return the master's pid from a MUX_S_ALIVE reply; raise ProtocolError otherwise."""
    return int(_expect(body, MUX_S_ALIVE, "MUX_S_ALIVE", 3, request_id)[2])


def parse_session_opened(body: bytes, request_id: int) -> None:
    """Accept a MUX_S_SESSION_OPENED reply to ``request_id``; raise ProtocolError otherwise."""
    if parse_type(body) in (MUX_S_FAILURE, MUX_S_PERMISSION_DENIED):
        reason = names.visible(body[12 : 12 + 200].decode("utf-8", "replace"), 200)
        raise ProtocolError(f"master refused a session: {reason}")
    _expect(body, MUX_S_SESSION_OPENED, "MUX_S_SESSION_OPENED", 2, request_id)


def parse_type(body: bytes) -> int:
    """The message type of a reply (the first word); raise ProtocolError if there is none."""
    return parse_words(body, 1)[0]


def _expect(
    body: bytes, msg_type: int, name: str, count: int, request_id: int | None = None
) -> tuple[int, ...]:
    """The first ``count`` words of a ``msg_type`` frame (answering ``request_id``, if given)."""
    words = parse_words(body, count)
    if words[0] != msg_type:
        raise ProtocolError(f"expected {name}, got message type {words[0]:#010x}")
    if request_id is not None and words[1] != request_id:
        raise ProtocolError(f"reply to request {words[1]}, expected {request_id}")
    return words
