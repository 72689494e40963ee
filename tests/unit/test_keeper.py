"""AgentKeeper through its seams: a fake socket, a fake starter and a fake clock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from backuppc_agent.agent.keeper import BACKOFF_MAX_SECONDS, STABLE_SECONDS, AgentKeeper
from backuppc_agent.agent.probe import Probed
from backuppc_agent.errors import AgentError, UnsafePathError
from backuppc_agent.unixsock import Failure
from tests.unit.agent_fakes import (
    FakeSocket,
    bind_socket,
    key,
    make_config,
    short_root,  # noqa: F401  (the root fixture)
)
from tests.unit.fakes import FakeClock


class Bed:
    """A keeper wired to a fake socket, starter and clock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = FakeSocket()
        self.clock = FakeClock()
        self.started: list[int] = []
        self.config = make_config(root, lifetime_seconds=3600)
        self.keeper = AgentKeeper(
            self.config.agent,
            self.socket.probe,
            self.clock,
            on_started=self.started.append,
            starter=self.socket.start,
        )

    def check(self) -> None:
        self.keeper.check(self.socket.probe(self.config.agent.socket, 1.0))


@pytest.fixture
def bed(root: Path) -> Bed:
    return Bed(root)


def test_attach_starts_an_agent_with_the_configured_argv_and_the_keepers_probe(bed: Bed) -> None:
    assert bed.keeper.attach() is None
    [(argv, probe_fn)] = bed.socket.starts
    assert argv == ("ssh-agent", "-D", "-a", str(bed.config.agent.socket), "-t", "3600")
    assert probe_fn == bed.socket.probe
    assert bed.keeper.pid == bed.socket.next_pid
    assert bed.started == [bed.keeper.pid]
    assert not bed.keeper.adopted
    env = bed.config.agent.env_file.read_text()
    assert f"SSH_AUTH_SOCK={bed.config.agent.socket}" in env
    assert f"SSH_AGENT_PID={bed.keeper.pid}" in env


def test_attach_adopts_a_live_agent_on_the_socket_and_starts_nothing(bed: Bed) -> None:
    bind_socket(bed.config.agent.socket)
    running = bed.socket.serve(keys=(key("a"),))
    found = bed.keeper.attach()
    assert found is not None
    assert found.peer_pid == running.pid
    assert (bed.keeper.pid, bed.keeper.adopted) == (running.pid, True)
    assert bed.socket.starts == []
    assert bed.started == []


def test_attach_removes_a_stale_socket_before_starting(bed: Bed) -> None:
    bind_socket(bed.config.agent.socket)
    bed.socket.stale = True
    bed.keeper.attach()
    assert not bed.config.agent.socket.exists()  # the fake starter binds nothing
    assert len(bed.socket.starts) == 1


def test_attach_refuses_a_listener_of_another_uid_and_leaves_it(bed: Bed) -> None:
    bind_socket(bed.config.agent.socket)
    bed.socket.hostile = Failure.FOREIGN
    with pytest.raises(UnsafePathError, match="hostile listener"):
        bed.keeper.attach()
    assert bed.config.agent.socket.is_socket()
    assert bed.socket.starts == []


@pytest.mark.parametrize("status", [Failure.BAD_REPLY, Failure.TIMEOUT])
def test_attach_refuses_a_live_listener_that_is_not_an_agent(
    bed: Bed, status: Probed | Failure
) -> None:
    bind_socket(bed.config.agent.socket)
    bed.socket.hostile = status
    with pytest.raises(AgentError, match="not a working ssh-agent"):
        bed.keeper.attach()
    assert bed.config.agent.socket.is_socket()
    assert bed.socket.starts == []


def test_a_dead_agent_is_restarted_at_once_the_first_time(bed: Bed) -> None:
    bed.keeper.attach()
    first = bed.socket.listener
    assert first is not None
    first.dies()
    bed.check()
    assert first.stopped
    assert bed.keeper.pid is not None
    assert bed.keeper.pid != first.pid
    assert bed.keeper.restarts == 1


def test_restarts_back_off_doubling_up_to_the_maximum(bed: Bed) -> None:
    bed.keeper.attach()
    delays = []
    for _ in range(9):
        agent = bed.socket.listener
        assert agent is not None
        agent.dies(stale=True)
        bed.check()  # notices the death; restarts only if no backoff is due
        waited = 0.0
        while bed.keeper.pid is None:
            bed.clock.sleep(0.25)
            waited += 0.25
            bed.check()
        delays.append(waited)
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_MAX_SECONDS, BACKOFF_MAX_SECONDS]
    assert bed.keeper.restarts == 9


def test_an_agent_that_ran_stably_is_restarted_at_once_again(bed: Bed) -> None:
    bed.keeper.attach()
    for _ in range(3):  # three quick deaths build up a backoff
        agent = bed.socket.listener
        assert agent is not None
        agent.dies()
        bed.check()
        while bed.keeper.pid is None:
            bed.clock.sleep(0.25)
            bed.check()
    bed.clock.sleep(STABLE_SECONDS)
    agent = bed.socket.listener
    assert agent is not None
    agent.dies()
    bed.check()
    assert bed.keeper.pid is not None


def test_a_failed_restart_is_retried_after_its_backoff(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    bed.keeper.attach()
    bed.socket.failing_starts = 1
    agent = bed.socket.listener
    assert agent is not None
    agent.dies()
    with caplog.at_level(logging.ERROR):
        bed.check()
    assert bed.keeper.pid is None
    assert "cannot restart ssh-agent: ssh-agent exited at start" in caplog.text
    bed.clock.sleep(0.4)
    bed.check()
    assert bed.keeper.pid is None  # the 0.5 s backoff is not over
    bed.clock.sleep(0.1)
    bed.check()
    assert bed.keeper.pid is not None
    assert len(bed.socket.starts) == 3


def test_an_agent_replaced_behind_its_back_is_adopted(bed: Bed) -> None:
    bed.keeper.attach()
    ours = bed.socket.listener
    other = bed.socket.serve(keys=(key("b"),))
    bed.check()
    assert ours is not None
    assert not ours.stopped
    assert (bed.keeper.pid, bed.keeper.adopted) == (other.pid, True)
    assert bed.keeper.restarts == 0


def test_stop_ends_the_agent_and_removes_its_socket(bed: Bed) -> None:
    bed.keeper.attach()
    agent = bed.socket.listener
    bind_socket(bed.config.agent.socket)
    bed.keeper.stop()
    assert agent is not None
    assert agent.stopped
    assert bed.keeper.pid is None
    assert not bed.config.agent.socket.exists()


@pytest.fixture
def adopting(root: Path) -> Bed:
    """A keeper that only adopts: another service (systemd's unit) runs the agent."""
    bed = Bed(root)
    bed.keeper = AgentKeeper(bed.config.agent, bed.socket.probe, bed.clock, starter=None)
    return bed


def test_adopting_only_starts_nothing_while_no_agent_is_on_the_socket(adopting: Bed) -> None:
    assert adopting.keeper.adopt_only
    assert adopting.keeper.attach() is None
    adopting.clock.sleep(BACKOFF_MAX_SECONDS)
    adopting.check()
    assert adopting.keeper.pid is None
    assert adopting.socket.starts == []


def test_adopting_only_adopts_the_agent_its_service_starts_later(adopting: Bed) -> None:
    adopting.keeper.attach()
    agent = adopting.socket.serve(keys=(key("a"),))
    adopting.check()
    assert (adopting.keeper.pid, adopting.keeper.adopted) == (agent.pid, True)
    env = adopting.config.agent.env_file.read_text()
    assert f"SSH_AGENT_PID={agent.pid}" in env


def test_adopting_only_leaves_a_lost_agent_to_its_service_and_adopts_the_next(
    adopting: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    bind_socket(adopting.config.agent.socket)
    first = adopting.socket.serve()
    assert adopting.keeper.attach() is not None
    first.dies(stale=True)
    with caplog.at_level(logging.WARNING):
        adopting.check()
    assert adopting.keeper.pid is None
    assert not first.stopped  # not signalled: the service ends or replaces it
    assert "waiting for its service to start another" in caplog.text
    second = adopting.socket.serve()
    adopting.check()
    assert adopting.keeper.pid == second.pid
    assert adopting.keeper.restarts == 1
    assert adopting.socket.starts == []


def test_find_agent_removes_a_stale_socket_and_starts_nothing(adopting: Bed) -> None:
    bind_socket(adopting.config.agent.socket)
    adopting.socket.stale = True
    assert adopting.keeper.find_agent() is None
    assert not adopting.config.agent.socket.exists()
    assert adopting.socket.starts == []
