"""Readiness from one probe: down, waiting (empty/locked, required key missing), ready; the
verdict's cause, unusable keys and expiries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from backuppc_agent.agent.certs import parse_keys
from backuppc_agent.agent.probe import Probed, ProbeResult
from backuppc_agent.agent.protocol import Identity, encode_string, fingerprint
from backuppc_agent.agent.readiness import Cause, Readiness, judge
from backuppc_agent.agent.signing import SignCheck, Signed
from backuppc_agent.state import State
from backuppc_agent.unixsock import Failure
from tests.unit.test_certs import cert_blob

KEY_A = encode_string(b"ssh-ed25519") + encode_string(b"a" * 32)
KEY_B = encode_string(b"ssh-ed25519") + encode_string(b"b" * 32)


def answered(*blobs: bytes) -> ProbeResult:
    return ProbeResult(Probed.ANSWERED, tuple(Identity(b, "c") for b in blobs), 1, 0)


def evaluate(
    result: ProbeResult,
    required: Sequence[str] = (),
    checks: Mapping[str, SignCheck] | None = None,
    now: float = 0.0,
    lifetimes: Sequence[tuple[str, float, str]] = (),
) -> Readiness:
    keys = parse_keys(result.identities, result.fingerprints)
    return judge(result, keys, required, checks, now, lifetimes)


def test_no_answer_is_down_with_the_probe_detail() -> None:
    ready = evaluate(ProbeResult(Failure.STALE, detail="nothing listens on /x (stale)"))
    assert (ready.state, ready.reason) == (State.DOWN, "nothing listens on /x (stale)")
    assert ready.cause is Cause.AGENT_DOWN
    slow = evaluate(ProbeResult(Failure.TIMEOUT, detail="did not answer in time"))
    assert (slow.state, slow.cause) == (State.DOWN, Cause.AGENT_SLOW)


def test_an_empty_or_locked_agent_is_waiting() -> None:
    ready = evaluate(answered())
    assert (ready.state, ready.cause) == (State.WAITING, Cause.NO_KEYS)
    assert "locked" in ready.reason


def test_any_key_is_ready_when_none_is_required() -> None:
    ready = evaluate(answered(KEY_A))
    assert (ready.state, ready.cause, ready.reason) == (State.READY, Cause.READY, "1 key loaded")
    assert evaluate(answered(KEY_A, KEY_B)).reason == "2 keys loaded"


def test_a_missing_required_key_keeps_it_waiting_and_names_it() -> None:
    wanted = fingerprint(KEY_B)
    ready = evaluate(answered(KEY_A), (wanted,))
    assert (ready.state, ready.cause) == (State.WAITING, Cause.MISSING_KEY)
    assert wanted in ready.reason
    assert evaluate(answered(KEY_A, KEY_B), (wanted,)).state is State.READY


def test_unusable_keys_carry_their_label_and_the_cause_says_unusable() -> None:
    checks = {fingerprint(KEY_A): SignCheck(Signed.REFUSED)}
    expired = cert_blob(valid_before=1_700_000_000)
    ready = evaluate(answered(KEY_A, expired), (), checks, now=1_800_000_000.0)
    assert (ready.state, ready.cause) == (State.WAITING, Cause.UNUSABLE)
    assert set(ready.unusable) == {
        (fingerprint(KEY_A), "refused"),
        (fingerprint(expired), "expired"),
    }
    assert ready.reason.startswith(f"key {fingerprint(KEY_A)} (c): agent refused to sign")
    assert ready.reason.endswith("(and 1 more)")


def test_an_unreadable_certificate_is_garbage() -> None:
    broken = cert_blob()[:-1]
    ready = evaluate(answered(broken), (), {}, now=1_650_000_000.0)
    assert ready.cause is Cause.UNUSABLE
    assert ready.unusable == ((fingerprint(broken), "garbage"),)
    assert "unreadable certificate (certificate truncated)" in ready.reason


def test_expiries_are_the_certificates_and_the_lifetimes_of_loaded_keys() -> None:
    cert = cert_blob(valid_before=1_700_000_000)
    lifetimes = [
        (fingerprint(KEY_A), 1_650_000_100.0, "lifetime"),
        ("SHA256:gone", 1.0, "lifetime"),
    ]
    ready = evaluate(answered(KEY_A, cert), (), None, 1_650_000_000.0, lifetimes)
    assert ready.expiries == (
        (fingerprint(KEY_A), 1_650_000_100.0, "lifetime"),
        (fingerprint(cert), 1_700_000_000.0, "certificate"),
    )
    # none required: any key will do, so authentication stops with the last one
    assert ready.expires == 1_700_000_000.0
    assert evaluate(answered(KEY_A), (), None, 0.0, lifetimes).expires == 1_650_000_100.0
