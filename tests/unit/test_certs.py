"""Certificate blobs parsed: key id, validity, the certified key; hostile ones refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backuppc_agent.agent import certs
from backuppc_agent.agent.protocol import encode_string as s
from backuppc_agent.errors import ProtocolError

CERT_TYPE = b"ssh-ed25519-cert-v01@openssh.com"


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def cert_blob(
    principals: tuple[bytes, ...] = (b"backup", b"root"),
    valid_after: int = 1_600_000_000,
    valid_before: int = 1_700_000_000,
    key_id: bytes = b"host-42",
    key_type: bytes = CERT_TYPE,
    key_fields: tuple[bytes, ...] = (bytes(32),),
    trailer: bytes = b"",
) -> bytes:
    packed = b"".join(s(p) for p in principals)
    return (
        s(key_type)
        + s(b"nonce" * 4)
        + b"".join(s(field) for field in key_fields)
        + u64(7)
        + struct.pack(">I", 1)  # a user certificate
        + s(key_id)
        + s(packed)
        + u64(valid_after)
        + u64(valid_before)
        + s(s(b"force-command") + s(s(b"/bin/true")))
        + s(s(b"permit-pty") + s(b""))
        + s(b"")
        + s(s(b"ssh-ed25519") + s(bytes(32)))
        + s(s(b"ssh-ed25519") + s(bytes(64)))
        + trailer
    )


def test_a_user_certificate_is_parsed() -> None:
    cert = certs.parse_certificate(cert_blob())
    assert cert is not None
    assert cert.key_id == "host-42"
    assert (cert.valid_after, cert.valid_before) == (1_600_000_000, 1_700_000_000)
    assert cert.key_blob == s(b"ssh-ed25519") + s(bytes(32))
    assert cert.expires == 1_700_000_000.0


def test_validity_before_during_and_after_the_window() -> None:
    cert = certs.parse_certificate(cert_blob())
    assert cert is not None
    assert cert.validity(1_500_000_000) is certs.Validity.NOT_YET_VALID
    assert "not valid until 2020-09-13" in (cert.validity_problem(1_500_000_000) or "")
    assert cert.validity(1_650_000_000) is certs.Validity.VALID
    assert cert.validity_problem(1_650_000_000) is None
    assert cert.validity(1_700_000_000) is certs.Validity.EXPIRED
    assert "'host-42' expired at 2023-11-14" in (cert.validity_problem(1_800_000_000) or "")


def test_a_certificate_valid_forever_never_expires() -> None:
    cert = certs.parse_certificate(cert_blob(valid_after=0, valid_before=certs.FOREVER))
    assert cert is not None
    assert cert.expires is None
    assert cert.validity(4_000_000_000) is certs.Validity.VALID


def test_a_plain_key_is_no_certificate() -> None:
    assert certs.parse_certificate(s(b"ssh-ed25519") + s(bytes(32))) is None


def test_rsa_and_ecdsa_certificates_skip_their_own_key_fields() -> None:
    rsa = cert_blob(key_type=b"ssh-rsa-cert-v01@openssh.com", key_fields=(b"\x01\x00\x01", b"n"))
    ecdsa = cert_blob(
        key_type=b"ecdsa-sha2-nistp256-cert-v01@openssh.com", key_fields=(b"nistp256", b"Q")
    )
    for blob in (rsa, ecdsa):
        cert = certs.parse_certificate(blob)
        assert cert is not None
        assert cert.key_id == "host-42"


def test_a_thousand_principals_are_skipped_and_a_long_key_id_is_cut() -> None:
    many = tuple(b"p%d" % n for n in range(1000))
    cert = certs.parse_certificate(cert_blob(principals=many, key_id=b"k" * 1000))
    assert cert is not None
    assert (cert.key_id, cert.valid_before) == ("k" * certs.MAX_KEY_ID_CHARS, 1_700_000_000)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (cert_blob()[:-1], "truncated"),
        (cert_blob(trailer=b"x"), "trailing"),
        (cert_blob(key_type=b"ssh-foo-cert-v01@openssh.com"), "unknown certificate key type"),
        (cert_blob(principals=())[:60] + b"\xff\xff\xff\xff", "truncated"),
    ],
)
def test_malformed_certificates_are_protocol_errors(blob: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        certs.parse_certificate(blob)


@given(st.binary(max_size=600))
@example(s(CERT_TYPE) + b"\xff\xff\xff\xff")
@example(cert_blob()[:100])
def test_any_bytes_give_a_certificate_none_or_a_protocol_error(blob: bytes) -> None:
    try:
        cert = certs.parse_certificate(blob)
    except ProtocolError:
        return
    assert cert is None or len(cert.key_id) <= certs.MAX_KEY_ID_CHARS


@given(st.integers(0, len(cert_blob()) - 1), st.integers(0, 255))
def test_any_one_byte_change_of_a_certificate_parses_or_fails_cleanly(at: int, value: int) -> None:
    blob = bytearray(cert_blob())
    blob[at] = value
    try:
        cert = certs.parse_certificate(bytes(blob))
    except ProtocolError:
        return
    assert cert is None or len(cert.key_id) <= certs.MAX_KEY_ID_CHARS
