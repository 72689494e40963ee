"""The agent as a service of its own (systemd's backuppc-ssh-agent.service).

`backuppc-agent agent` becomes a real ssh-agent on the configured socket;
`backuppc-agent run --adopt` never starts one, waits for it and adopts it, and
ends it on stop only with on_stop = "stop-agent".
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from backuppc_agent.agent.probe import probe
from tests.helpers import (
    CLI,
    Setup,
    Supervisor,
    agent_pids_on,
    cli,
    kill_agents_on,
    make_setup,
    ssh_add,
    wait_for,
)


@contextmanager
def agent_service(setup: Setup) -> Iterator[subprocess.Popen[bytes]]:
    """``backuppc-agent agent`` as a service manager runs it; killed afterwards."""
    proc = subprocess.Popen(
        [CLI, "--config", str(setup.config), "agent"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: probe(setup.socket, 1.0).peer_pid == proc.pid, timeout=10)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()
        kill_agents_on(setup.socket)


def test_agent_becomes_ssh_agent_itself_and_stops_cleanly_on_term(setup: Setup) -> None:
    with agent_service(setup) as proc:
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "ssh-agent"
        assert agent_pids_on(setup.socket) == [proc.pid]
        proc.send_signal(signal.SIGTERM)
        # 2 is ssh-agent's status after TERM: the unit's SuccessExitStatus.
        assert proc.wait(timeout=10) == 2
        assert not setup.socket.exists()


def test_agent_replaces_a_stale_socket(setup: Setup) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(setup.socket))
    stale.close()
    with agent_service(setup) as proc:
        assert probe(setup.socket, 1.0).peer_pid == proc.pid


def test_agent_refuses_when_an_agent_already_answers(setup: Setup) -> None:
    with agent_service(setup) as proc:
        second = cli("agent", config=setup.config)
        assert second.returncode == exitcodes.AGENT_FAILED
        assert f"an ssh-agent (pid {proc.pid}) already answers" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert agent_pids_on(setup.socket) == [proc.pid]


def test_run_adopt_waits_without_an_agent_and_adopts_the_services_agent(
    setup: Setup, keys: dict[str, Path]
) -> None:
    sup = Supervisor(setup, run_args=("--adopt",))
    try:
        sup.start("down")
        assert not setup.socket.exists()
        assert agent_pids_on(setup.socket) == []
        with agent_service(setup) as proc:
            wait_for(lambda: (setup.state() or {}).get("agent_pid") == proc.pid, timeout=5)
            assert setup.published("waiting")
            assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
            wait_for(lambda: setup.published("ready"), timeout=5)
            assert agent_pids_on(setup.socket) == [proc.pid]
            assert "waiting for one to adopt" in sup.logtext()
    finally:
        sup.stop()


@pytest.mark.parametrize(
    ("on_stop", "agent_survives"), [("keep-agent", True), ("stop-agent", False)]
)
def test_stopping_run_adopt_ends_the_agent_only_for_stop_agent(
    tmp_path: Path, on_stop: str, agent_survives: bool
) -> None:
    setup = make_setup(tmp_path / "inst", agent={"on_stop": on_stop})
    with agent_service(setup) as proc:
        sup = Supervisor(setup, run_args=("--adopt",))
        try:
            sup.start("waiting")
        finally:
            sup.stop()
        if agent_survives:
            assert proc.poll() is None
            assert probe(setup.socket, 1.0).peer_pid == proc.pid
        else:
            assert proc.wait(timeout=10) == 2
