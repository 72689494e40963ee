"""waits.until and the readiness wait, on a fake clock and a fake probe (no real time passes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from backuppc_agent import config as config_mod
from backuppc_agent import waits
from backuppc_agent.agent.probe import Probed, ProbeResult
from backuppc_agent.agent.protocol import Identity, encode_string
from backuppc_agent.agent.readiness import Cause, wait_ready
from backuppc_agent.agent.signing import SignCheck, Signed
from backuppc_agent.state import State
from backuppc_agent.unixsock import Failure
from tests.unit.fakes import FakeAgent, FakeClock

KEY = encode_string(b"ssh-ed25519") + encode_string(b"k" * 32)


def test_until_returns_the_first_result_that_is_done_without_sleeping() -> None:
    clock = FakeClock()
    assert waits.until(lambda: "yes", clock() + 5, 0.5, clock=clock, sleep=clock.sleep) == "yes"
    assert clock.sleeps == []


def test_until_polls_at_the_interval_and_never_sleeps_past_the_deadline() -> None:
    clock = FakeClock()
    result = waits.until(lambda: 0, clock() + 1.2, 0.5, clock=clock, sleep=clock.sleep)
    assert result == 0
    assert clock.sleeps == pytest.approx([0.5, 0.5, 0.2])


def test_until_with_no_deadline_waits_until_done() -> None:
    clock = FakeClock()
    answers = iter([False] * 50 + [True])
    assert waits.until(lambda: next(answers), None, 60, clock=clock, sleep=clock.sleep)
    assert len(clock.sleeps) == 50


def test_until_takes_a_predicate_for_results_that_are_always_truthy() -> None:
    clock = FakeClock()
    values = iter(range(10))
    got = waits.until(lambda: next(values), None, 1, done=lambda n: n >= 3, sleep=clock.sleep)
    assert got == 3


def test_pause_returns_at_once_for_nothing_to_wait() -> None:
    waits.pause(0)
    waits.pause(-1)


EMPTY = ProbeResult(Probed.ANSWERED, (), 1, 0)
LOADED = ProbeResult(Probed.ANSWERED, (Identity(KEY, "k"),), 1, 0)


def _agent_config() -> config_mod.AgentConfig:
    return config_mod.from_mapping({}, "test", Path("/home/t")).agent


def test_wait_ready_reports_the_time_the_keys_took_to_arrive() -> None:
    clock = FakeClock()
    agent = FakeAgent(clock, [(0, EMPTY), (3.0, LOADED)])
    ready = wait_ready(_agent_config(), 30, 0.2, clock, clock.sleep, agent, agent.sign)
    assert ready.state is State.READY
    assert ready.waited_seconds == pytest.approx(3.0)
    assert ready.identities == 1


def test_wait_ready_gives_up_at_its_deadline_with_the_last_reason() -> None:
    clock = FakeClock()
    agent = FakeAgent(clock, [(0, EMPTY)])
    ready = wait_ready(_agent_config(), 2, 0.5, clock=clock, sleep=clock.sleep, probe_agent=agent)
    assert ready.state is State.WAITING
    assert "ssh-add" in ready.reason
    assert ready.waited_seconds == pytest.approx(2.0)
    # The last probe's timeout is cut to what is left, but never below a usable minimum.
    assert min(agent.timeouts) == pytest.approx(0.05)


def test_wait_ready_keeps_how_the_last_probe_ended() -> None:
    clock = FakeClock()
    slow = ProbeResult(Failure.TIMEOUT, detail="no answer within 2 s")
    agent = FakeAgent(clock, [(0, slow)])
    ready = wait_ready(_agent_config(), 1, 0.2, clock=clock, sleep=clock.sleep, probe_agent=agent)
    assert ready.state is State.DOWN
    assert ready.cause is Cause.AGENT_SLOW
    assert ready.probe.status is Failure.TIMEOUT


def test_wait_ready_is_not_ready_while_the_listed_key_cannot_sign() -> None:
    clock = FakeClock()
    agent = FakeAgent(clock, [(0, LOADED)])

    def refuse(path: Path, keys: Sequence[Identity], timeout: float) -> dict[str, SignCheck]:
        return {key.fingerprint: SignCheck(Signed.REFUSED) for key in keys}

    ready = wait_ready(_agent_config(), 1, 0.2, clock, clock.sleep, agent, refuse)
    assert ready.state is State.WAITING
    assert "confirmation required" in ready.reason
