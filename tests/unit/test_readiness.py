"""Readiness from one probe: down, waiting (empty/locked, required key missing), ready."""

from __future__ import annotations

from backuppc_agent.agent.probe import ProbeResult, ProbeStatus
from backuppc_agent.agent.protocol import Identity, encode_string, fingerprint
from backuppc_agent.agent.readiness import evaluate
from backuppc_agent.state import State

KEY_A = encode_string(b"ssh-ed25519") + encode_string(b"a" * 32)
KEY_B = encode_string(b"ssh-ed25519") + encode_string(b"b" * 32)


def answered(*blobs: bytes) -> ProbeResult:
    return ProbeResult(ProbeStatus.ANSWERED, tuple(Identity(b, "c") for b in blobs), 1, 0)


def test_no_answer_is_down_with_the_probe_detail() -> None:
    result = ProbeResult(ProbeStatus.REFUSED, detail="nothing listens on /x (stale)")
    assert evaluate(result, ()) == (State.DOWN, "nothing listens on /x (stale)")


def test_an_empty_or_locked_agent_is_waiting() -> None:
    state, reason = evaluate(answered(), ())
    assert state is State.WAITING
    assert "locked" in reason


def test_any_key_is_ready_when_none_is_required() -> None:
    assert evaluate(answered(KEY_A), ()) == (State.READY, "1 key loaded")
    assert evaluate(answered(KEY_A, KEY_B), ())[1] == "2 keys loaded"


def test_a_missing_required_key_keeps_it_waiting_and_names_it() -> None:
    wanted = fingerprint(KEY_B)
    state, reason = evaluate(answered(KEY_A), (wanted,))
    assert state is State.WAITING
    assert wanted in reason
    assert evaluate(answered(KEY_A, KEY_B), (wanted,))[0] is State.READY
