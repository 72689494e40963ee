"""The signing probe's pure parts: framing, reply parsing, judging, scheduling, readiness."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backuppc_agent.agent import authwatch, certs, protocol, readiness, signing
from backuppc_agent.agent.authwatch import AuthWatch
from backuppc_agent.agent.probe import Probed, ProbeResult
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.agent.signing import SignCheck, Signed
from backuppc_agent.config import from_mapping
from backuppc_agent.errors import ProtocolError
from backuppc_agent.state import State
from backuppc_agent.unixsock import Failure
from tests.unit.test_certs import cert_blob

s = protocol.encode_string
ED25519 = Identity(s(b"ssh-ed25519") + s(bytes(32)), "backup key")
OTHER = Identity(s(b"ssh-ed25519") + s(bytes([1]) * 32), "other")
SK = Identity(s(b"sk-ssh-ed25519@openssh.com") + s(bytes(32)) + s(b"ssh:"), "fido")


def signature(name: bytes, blob: bytes) -> bytes:
    return bytes((protocol.SSH_AGENT_SIGN_RESPONSE,)) + s(s(name) + s(blob))


def test_a_sign_request_frames_key_data_and_flags() -> None:
    frame = protocol.sign_request(b"KEY", b"DATA", 2)
    assert frame == struct.pack(">IB", 20, 13) + s(b"KEY") + s(b"DATA") + struct.pack(">I", 2)


def test_a_sign_response_parses_to_its_format_and_blob() -> None:
    assert protocol.parse_sign_response(signature(b"ssh-ed25519", b"x" * 64)) == (
        "ssh-ed25519",
        b"x" * 64,
    )


def test_failure_means_the_agent_refused() -> None:
    assert protocol.parse_sign_response(b"\x05") is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x06",
        b"\x05extra",
        b"\x0e",
        signature(b"ssh-ed25519", b""),
        signature(b"", b"sig"),
        signature(b"bad name", b"sig"),
        signature(b"ssh-ed25519", b"sig") + b"!",
        bytes((14,)) + s(s(b"ssh-ed25519") + s(b"sig") + b"junk"),
    ],
)
def test_malformed_sign_responses_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        protocol.parse_sign_response(body)


@given(st.binary(max_size=300))
@example(b"\x0e\xff\xff\xff\xff")
@example(signature(b"ssh-ed25519", b"x" * 64)[:-1])
def test_any_sign_reply_parses_or_is_a_protocol_error(body: bytes) -> None:
    try:
        parsed = protocol.parse_sign_response(body)
    except ProtocolError:
        return
    assert parsed is None or (parsed[0] and parsed[1])


@pytest.mark.parametrize(
    ("key_type", "sig_format", "blob", "status"),
    [
        ("ssh-ed25519", "ssh-ed25519", bytes(64), Signed.OK),
        ("ssh-ed25519-cert-v01@openssh.com", "ssh-ed25519", bytes(64), Signed.OK),
        ("ssh-rsa", "rsa-sha2-256", bytes(256), Signed.OK),
        ("ssh-ed25519", "ssh-ed25519", bytes(10), Failure.BAD_REPLY),
        ("ssh-ed25519", "rsa-sha2-256", bytes(64), Failure.BAD_REPLY),
    ],
)
def test_a_signature_must_fit_its_key_type(
    key_type: str, sig_format: str, blob: bytes, status: Signed | Failure
) -> None:
    assert signing.judge_signature(key_type, sig_format, blob).status is status


def test_reasons_name_confirmation_and_touch() -> None:
    assert "confirmation required" in SignCheck(Signed.REFUSED).reason
    assert "needs a touch" in SignCheck(Signed.TOUCH).reason
    assert SignCheck(Signed.OK).reason == ""


def keys(*identities: Identity) -> tuple[certs.Key, ...]:
    return certs.parse_keys(identities, [identity.fingerprint for identity in identities])


def test_required_keys_are_signed_else_a_bounded_sample() -> None:
    many = [Identity(s(b"ssh-ed25519") + s(n.to_bytes(32, "big")), "") for n in range(50)]
    assert len(readiness.to_sign(keys(*many), ())) == readiness.SAMPLE_KEYS
    wanted = [many[30].fingerprint, many[40].fingerprint]
    assert readiness.to_sign(keys(*many), wanted) == (many[30], many[40])


class Signer:
    def __init__(self) -> None:
        self.rounds: list[tuple[Identity, ...]] = []

    def __call__(self, path: Path, keys: Sequence[Identity], timeout: float) -> signing.SignChecks:
        self.rounds.append(tuple(keys))
        return {key.fingerprint: SignCheck(Signed.OK) for key in keys}


def watch(sign: Callable[..., signing.SignChecks], now: list[float]) -> AuthWatch:
    """An AuthWatch signing every 60 s on the clock ``now[0]``."""
    config = from_mapping({"agent": {"sign_interval_seconds": 60}}, "test", Path("/home/t"))
    return AuthWatch(config.agent, sign, lambda: now[0])


def test_the_schedule_signs_when_keys_change_or_the_interval_passes() -> None:
    now = [0.0]
    signer = Signer()
    schedule = watch(signer, now)
    for _ in range(5):
        schedule.assess(answered(ED25519))
    assert len(signer.rounds) == 1
    schedule.assess(answered(ED25519, OTHER))
    assert len(signer.rounds) == 2
    now[0] = 61.0
    schedule.assess(answered(ED25519, OTHER))
    assert len(signer.rounds) == 3


def answered(*ids: Identity) -> ProbeResult:
    return ProbeResult(Probed.ANSWERED, ids, 1, 0)


def evaluate(
    result: ProbeResult,
    required: Sequence[str],
    checks: signing.SignChecks | None = None,
    now: float = 0.0,
) -> tuple[State, str]:
    found = keys(*result.identities)
    ready = readiness.judge(result, found, required, checks, now)
    return ready.state, ready.reason


def test_a_key_that_lists_but_is_refused_makes_the_state_waiting() -> None:
    checks = {ED25519.fingerprint: SignCheck(Signed.REFUSED)}
    state, reason = evaluate(answered(ED25519), (), checks, 0.0)
    assert state is State.WAITING
    assert ED25519.fingerprint in reason
    assert "confirmation required" in reason


def test_without_required_keys_one_key_that_signs_is_enough() -> None:
    checks = {
        ED25519.fingerprint: SignCheck(Signed.OK),
        SK.fingerprint: SignCheck(Signed.TOUCH),
    }
    state, reason = evaluate(answered(SK, ED25519), (), checks, 0.0)
    assert state is State.READY
    assert reason.startswith("2 keys loaded; key ")
    assert "needs a touch" in reason


def test_a_required_key_that_does_not_sign_is_not_ready_even_beside_good_keys() -> None:
    checks = {SK.fingerprint: SignCheck(Signed.TOUCH)}
    state, reason = evaluate(answered(ED25519, SK), (SK.fingerprint,), checks, 0.0)
    assert state is State.WAITING
    assert "needs a touch" in reason


def test_without_a_signing_probe_a_listed_key_still_counts() -> None:
    assert evaluate(answered(ED25519), ()) == (State.READY, "1 key loaded")


def test_first_expiry_is_the_soonest_required_or_the_last_of_any() -> None:
    found = [("A", 100.0, "certificate"), ("B", 200.0, "lifetime")]
    assert certs.first_expiry(found, ["A", "B"], required=True) == 100.0
    assert certs.first_expiry(found, ["A", "B"], required=False) == 200.0
    assert certs.first_expiry(found, ["A", "B", "C"], required=False) is None


def test_keys_that_vanish_at_their_lifetime_are_said_to_have_expired() -> None:
    tracker = certs.LifetimeTracker()
    tracker.observe(["A"], 3, now=1000.0, slack=1.0)
    assert tracker.expiries(3) == [("A", 1003.0, "lifetime")]
    tracker.observe([], 3, now=1001.0, slack=1.0)
    assert tracker.note is None  # removed by hand, long before its deadline
    tracker.observe(["A"], 3, now=1010.0, slack=1.0)
    tracker.observe([], 3, now=1013.1, slack=1.0)
    assert tracker.note is not None
    assert "1 key expired at" in tracker.note
    assert "agent.lifetime_seconds = 3" in tracker.note
    tracker.observe(["B"], 3, now=1020.0, slack=1.0)
    assert tracker.note is None


def test_a_certificate_stands_for_its_key_and_is_required_by_its_keys_fingerprint() -> None:
    plain = Identity(s(b"ssh-ed25519") + s(bytes(32)), "key")
    cert = Identity(cert_blob(valid_before=1_700_000_000), "key")
    both = keys(plain, cert)
    assert readiness.counting(both, ()) == [both[1]]
    assert both[1].listed == plain.fingerprint
    assert readiness.counting(both, [plain.fingerprint]) == [both[1]]
    ok = {key.fingerprint: SignCheck(Signed.OK) for key in (plain, cert)}
    assert evaluate(answered(plain, cert), (), ok, 1_650_000_000.0)[0] is State.READY
    state, reason = evaluate(answered(plain, cert), (), ok, 1_800_000_000.0)
    assert state is State.WAITING
    assert "certificate 'host-42' expired at 2023-11-14" in reason


def test_the_schedule_retries_a_refused_key_soon_though_the_keys_did_not_change() -> None:
    now = [0.0]
    rounds: list[float] = []

    def refuse(path: Path, keys: Sequence[Identity], timeout: float) -> signing.SignChecks:
        rounds.append(now[0])
        return {key.fingerprint: SignCheck(Signed.REFUSED) for key in keys}

    schedule = watch(refuse, now)
    for step in range(13):
        now[0] = step * 1.0
        schedule.assess(answered(ED25519))
    assert rounds == [0.0, authwatch.RETRY_SECONDS, 2 * authwatch.RETRY_SECONDS]
