"""Supervisor through its seams: start, poll and stop driven with a fake socket and clock."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent import state
from backuppc_agent.agent.supervisor import Phase, Supervisor
from backuppc_agent.config import Config
from backuppc_agent.errors import ConfigError, UnsafePathError
from backuppc_agent.state import Snapshot, State
from backuppc_agent.unixsock import Failure
from tests.unit.agent_fakes import (
    FakeAgent,
    FakeSocket,
    bind_socket,
    key,
    make_config,
    short_root,  # noqa: F401  (the root fixture)
)
from tests.unit.fakes import FakeClock


class Recorder:
    """A listener that records what the supervisor tells it."""

    def __init__(self) -> None:
        self.moves: list[tuple[str, str]] = []
        self.reloads: list[Config] = []
        self.closed = 0

    def on_snapshot(self, old: Snapshot | None, new: Snapshot) -> None:
        self.moves.append((old.state.value if old else "none", new.state.value))

    def on_reload(self, config: Config) -> None:
        self.reloads.append(config)

    def close(self) -> None:
        self.closed += 1


class Bed:
    """A supervisor wired to a fake socket, starter, clock, loader and listener."""

    def __init__(self, root: Path, socket: FakeSocket | None = None, **agent: object) -> None:
        self.root = root
        self.socket = socket or FakeSocket()
        self.clock = FakeClock()
        self.listener = Recorder()
        self.config = make_config(root, **agent)
        self.next_config: Config | ConfigError = self.config
        self.sup = Supervisor(
            self.config,
            listeners=[self.listener],
            probe_fn=self.socket.probe,
            loader=self._load,
            clock=self.clock,
            agent_starter=self.socket.start,
            sign=self.socket.sign,
        )

    def _load(self, path: str | None) -> Config:
        if isinstance(self.next_config, ConfigError):
            raise self.next_config
        return self.next_config

    @property
    def agent(self) -> FakeAgent:
        assert self.socket.listener is not None
        return self.socket.listener

    def poll(self) -> State:
        """One turn of the loop; the clock moves on by the wait it asks for."""
        seconds = self.sup.poll()
        assert seconds is not None
        self.clock.sleep(seconds)
        assert self.sup.snapshot is not None
        return self.sup.snapshot.state

    def published(self) -> Snapshot:
        snap = state.read(self.config.state.dir)
        assert snap is not None
        return snap


@pytest.fixture
def bed(root: Path) -> Iterator[Bed]:
    made = Bed(root)
    yield made
    made.sup.stop()


def test_readiness_follows_the_keys_waiting_ready_waiting(bed: Bed) -> None:
    bed.sup.start()
    assert bed.poll() is State.WAITING
    bed.agent.keys = (key("a"),)
    assert bed.poll() is State.READY
    assert bed.poll() is State.READY
    bed.agent.keys = ()
    assert bed.poll() is State.WAITING
    assert bed.listener.moves == [("none", "waiting"), ("waiting", "ready"), ("ready", "waiting")]
    published = bed.published()
    assert (published.state, published.agent_pid, published.supervisor_pid) == (
        State.WAITING,
        bed.agent.pid,
        os.getpid(),
    )


def test_a_required_key_that_is_not_loaded_keeps_it_waiting(root: Path) -> None:
    wanted = key("wanted")
    bed = Bed(root, required_keys=[wanted.fingerprint])
    try:
        bed.sup.start()
        bed.agent.keys = (key("other"),)
        assert bed.poll() is State.WAITING
        bed.agent.keys = (key("other"), wanted)
        assert bed.poll() is State.READY
    finally:
        bed.sup.stop()


def test_a_key_that_lists_but_cannot_sign_keeps_it_waiting(bed: Bed) -> None:
    bed.sup.start()
    confirm = key("confirm")
    bed.socket.refusing.add(confirm.fingerprint)
    bed.agent.keys = (confirm,)
    assert bed.poll() is State.WAITING
    bed.agent.keys = (confirm, key("plain"))
    assert bed.poll() is State.READY


def test_a_dead_agent_is_down_then_restarted_with_backoff(bed: Bed) -> None:
    bed.sup.start()
    bed.agent.keys = (key("a"),)
    assert bed.poll() is State.READY
    bed.agent.dies()
    assert bed.poll() is State.WAITING  # restarted at once: up, but its keys are gone
    assert bed.sup.keeper.restarts == 1
    bed.agent.dies(stale=True)
    assert bed.poll() is State.DOWN  # the second death waits 0.5 s
    states = [bed.poll() for _ in range(10)]  # 0.2 s apart
    assert states[:2] == [State.DOWN, State.DOWN]
    assert states[-1] is State.WAITING
    assert bed.sup.keeper.restarts == 2
    assert bed.published().agent_restarts == 2
    assert ("ready", "down") not in bed.listener.moves  # the first restart hid the death


def test_polls_space_out_when_probes_get_slow(bed: Bed) -> None:
    bed.sup.start()
    assert bed.sup.poll() == bed.config.agent.poll_seconds
    bed.socket.probe_seconds = 0.5
    assert bed.sup.poll() == 1.0


def test_an_adopted_agent_keeps_the_history_its_supervisor_published(root: Path) -> None:
    first = Bed(root, on_stop="keep-agent")  # the agent outlives its supervisor
    first.sup.start()
    first.agent.keys = (key("a"),)
    first.poll()
    first.agent.dies()
    first.poll()
    since = first.published().since
    first.sup.stop()
    assert first.published().supervisor_pid is None
    second = Bed(root, socket=first.socket)
    bind_socket(second.config.agent.socket)
    try:
        second.sup.start()
        assert (second.sup.keeper.pid, second.sup.keeper.adopted) == (first.agent.pid, True)
        assert second.sup.keeper.restarts == 1
        second.poll()
        assert second.published().since == since
        assert len(first.socket.starts) == 2  # the first start and one restart, none by second
    finally:
        second.sup.stop()


def test_sighup_reloads_and_a_broken_config_keeps_the_old_one(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    bed.sup.start()
    bed.poll()
    changed = make_config(bed.root, poll_seconds=1.5)
    bed.next_config = changed
    bed.sup.record_signal(signal.SIGHUP)
    assert bed.sup.poll() == 1.5
    assert bed.listener.reloads == [changed]
    bed.next_config = ConfigError("config.toml", ["agent.poll_seconds: too big"])
    bed.sup.record_signal(signal.SIGHUP)
    with caplog.at_level(logging.ERROR):
        assert bed.sup.poll() == 1.5
    assert "agent.poll_seconds: too big" in caplog.text
    assert bed.sup.config is changed
    assert bed.listener.reloads == [changed]


def test_sigterm_stops_the_loop_and_the_agent_and_publishes_down(bed: Bed) -> None:
    bed.sup.start()
    agent = bed.agent
    agent.keys = (key("a"),)
    bed.poll()
    bed.sup.record_signal(signal.SIGTERM)
    assert bed.sup.poll() is None
    bed.sup.stop()
    assert bed.sup.phase is Phase.STOPPED
    assert agent.stopped
    final = bed.published()
    assert (final.state, final.agent_pid, final.supervisor_pid) == (State.DOWN, None, None)
    assert bed.listener.closed == 1
    assert not state.supervisor_running(bed.config.state.dir)


def test_a_start_that_fails_releases_the_lock_and_closes_the_listeners(bed: Bed) -> None:
    bind_socket(bed.config.agent.socket)
    bed.socket.hostile = Failure.FOREIGN
    with pytest.raises(UnsafePathError):
        bed.sup.start()
    assert bed.sup.phase is Phase.STOPPED
    assert bed.listener.closed == 1
    assert not state.supervisor_running(bed.config.state.dir)
