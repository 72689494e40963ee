"""The agent wire protocol parser: valid replies, and hostile ones refused cheaply."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backuppc_agent.agent import protocol
from backuppc_agent.errors import ProtocolError

BLOB = protocol.encode_string(b"ssh-ed25519") + protocol.encode_string(bytes(range(32)))


def answer(entries: list[tuple[bytes, bytes]], count: int | None = None) -> bytes:
    body = struct.pack(">I", len(entries) if count is None else count)
    for blob, comment in entries:
        body += protocol.encode_string(blob) + protocol.encode_string(comment)
    return bytes((protocol.SSH_AGENT_IDENTITIES_ANSWER,)) + body


def test_request_identities_is_the_five_byte_frame() -> None:
    assert protocol.REQUEST_IDENTITIES == b"\x00\x00\x00\x01\x0b"


def test_parses_identities_with_comments_and_types() -> None:
    ids = protocol.parse_identities(answer([(BLOB, b"first"), (BLOB, b"second")]))
    assert [i.comment for i in ids] == ["first", "second"]
    assert ids[0].key_type == "ssh-ed25519"
    assert ids[0].fingerprint.startswith("SHA256:")
    assert len(ids[0].fingerprint) == len("SHA256:") + 43


def test_an_empty_list_parses_to_no_identities() -> None:
    assert protocol.parse_identities(answer([])) == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty reply"),
        (bytes((protocol.SSH_AGENT_FAILURE,)), "refused"),
        (bytes((14,)) + b"\x00" * 4, "message type 14"),
        (answer([], count=2**32 - 1), "claims 4294967295 identities"),
        (answer([(BLOB, b"c")])[:-1], "truncated"),
        (answer([(BLOB, b"c")]) + b"x", "trailing"),
        (bytes((12,)) + b"\x00\x00", "truncated"),
    ],
)
def test_hostile_replies_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        protocol.parse_identities(body)


def test_frame_lengths_are_bounded() -> None:
    assert protocol.reply_length(b"\x00\x00\x00\x05") == 5
    with pytest.raises(ProtocolError, match="4294967295-byte reply"):
        protocol.reply_length(b"\xff\xff\xff\xff")
    with pytest.raises(ProtocolError, match="0-byte frame: too short"):
        protocol.reply_length(b"\x00\x00\x00\x00")


def test_a_malformed_blob_has_an_unknown_type() -> None:
    assert protocol.Identity(b"\x00", "x").key_type == "?"
    hostile = protocol.encode_string(b"ssh-\x1b[2J") + bytes(32)
    assert protocol.Identity(hostile, "x").key_type == "?"  # status prints it as it is


def test_a_key_type_is_read_only_from_a_whole_printable_name() -> None:
    assert protocol.key_type(b"") is None
    assert protocol.key_type(struct.pack(">I", 1000) + b"x") is None
    assert protocol.key_type(protocol.encode_string(b"ssh ed25519")) is None
    assert protocol.key_type(protocol.encode_string("ssh-é".encode())) is None
    assert protocol.key_type(protocol.encode_string(b"x" * 65)) is None
    assert protocol.key_type(BLOB) == "ssh-ed25519"


@given(st.binary(max_size=512))
def test_any_bytes_either_parse_or_raise_protocol_error(data: bytes) -> None:
    try:
        ids = protocol.parse_identities(data)
    except ProtocolError:
        return
    assert all(isinstance(i.blob, bytes) for i in ids)


@given(st.lists(st.tuples(st.binary(max_size=64), st.text(max_size=20)), max_size=20))
def test_what_we_encode_parses_back(entries: list[tuple[bytes, str]]) -> None:
    encoded = answer([(blob, comment.encode()) for blob, comment in entries])
    parsed = protocol.parse_identities(encoded)
    assert [(i.blob, i.comment) for i in parsed] == entries
