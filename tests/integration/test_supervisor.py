"""The supervisor against real ssh-agent and ssh-add, with passphrase-protected keys."""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from pathlib import Path

import pytest

from tests.helpers import (
    Setup,
    Supervisor,
    agent_pids_on,
    cli,
    key_fingerprint,
    kill_agents_on,
    make_setup,
    running,
    ssh_add,
    wait_for,
)


def test_starts_an_agent_on_the_fixed_socket_and_waits_for_keys(setup: Setup) -> None:
    with running(setup) as sup:
        assert stat.S_ISSOCK(setup.socket.lstat().st_mode)
        state = setup.state()
        assert state is not None
        assert state["agent_pid"] in agent_pids_on(setup.socket)
        assert state["identities"] == 0
        assert stat.S_IMODE((setup.state_dir / "state.json").stat().st_mode) == 0o600
        env = setup.env_file.read_text()
        assert f"SSH_AUTH_SOCK={setup.socket}; export SSH_AUTH_SOCK;" in env
        assert f"SSH_AGENT_PID={state['agent_pid']}; export SSH_AGENT_PID;" in env
        assert stat.S_IMODE(setup.env_file.stat().st_mode) == 0o600
        assert "load keys with: SSH_AUTH_SOCK=" in sup.logtext()


def test_ssh_add_makes_it_ready_and_removing_the_key_makes_it_wait_again(
    setup: Setup, keys: dict[str, Path]
) -> None:
    with running(setup):
        added = ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"])
        assert added.returncode == 0, added.stderr
        wait_for(lambda: setup.published("ready"), timeout=2)
        state = setup.state()
        assert state is not None
        assert state["fingerprints"] == [key_fingerprint(keys["a"])]
        status = cli("status", config=setup.config)
        assert status.returncode == 0
        assert "state:       ready" in status.stdout
        assert ssh_add(setup.socket, "-d", f"{keys['a']}.pub").returncode == 0
        wait_for(lambda: setup.published("waiting"), timeout=2)
        assert cli("status", config=setup.config).returncode == 1


def test_required_keys_must_all_be_loaded(tmp_path: Path, keys: dict[str, Path]) -> None:
    wanted = key_fingerprint(keys["b"])
    setup = make_setup(tmp_path / "inst", agent={"required_keys": [wanted]})
    with running(setup):
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: (setup.state() or {}).get("identities") == 1)
        state = setup.state()
        assert state is not None
        assert state["state"] == "waiting"
        assert wanted in state["reason"]
        assert ssh_add(setup.socket, str(keys["b"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"), timeout=2)


def test_expired_keys_turn_ready_back_to_waiting(tmp_path: Path, keys: dict[str, Path]) -> None:
    # Long enough a lifetime that a loaded machine still sees the key as ready first.
    setup = make_setup(tmp_path / "inst", agent={"lifetime_seconds": 4})
    with running(setup):
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"), timeout=4)
        wait_for(lambda: setup.published("waiting"), timeout=10)


def test_a_killed_agent_is_restarted_and_the_loss_is_reported(
    setup: Setup, keys: dict[str, Path]
) -> None:
    with running(setup) as sup:
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"), timeout=2)
        state = setup.state()
        assert state is not None
        old_pid = state["agent_pid"]
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: (setup.state() or {}).get("agent_restarts") == 1, timeout=10)
        wait_for(lambda: setup.published("waiting"), timeout=5)
        state = setup.state()
        assert state is not None
        assert state["agent_pid"] != old_pid
        assert state["agent_pid"] in agent_pids_on(setup.socket)
        assert "WARNING" in sup.logtext()
        assert "keys are lost" in sup.logtext()
        assert "ssh-add" in sup.logtext()


def test_a_restarted_supervisor_adopts_the_live_agent_with_its_keys(
    setup: Setup, keys: dict[str, Path]
) -> None:
    first = Supervisor(setup).start()
    try:
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"), timeout=2)
        state = setup.state()
        assert state is not None
        agent_pid = state["agent_pid"]
        first.signal(signal.SIGKILL)
        first.wait()
        assert agent_pids_on(setup.socket) == [agent_pid]
        second = Supervisor(setup).start(wait_state="ready")
        try:
            state = setup.state()
            assert state is not None
            assert state["agent_pid"] == agent_pid
            assert state["identities"] == 1
            assert state["adopted"] is True
            assert "adopted running ssh-agent" in second.logtext()
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_stale_socket_is_removed_and_a_fresh_agent_started(setup: Setup) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(setup.socket))
    stale.close()
    assert stat.S_ISSOCK(setup.socket.lstat().st_mode)
    with running(setup) as sup:
        assert "removing stale agent socket" in sup.logtext()
        assert len(agent_pids_on(setup.socket)) == 1


def _refused(setup: Setup, needle: str) -> None:
    result = cli("run", config=setup.config, timeout=20)
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if "backuppc-agent:" in line]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_refuses_a_symlink_at_the_socket_path(setup: Setup, tmp_path: Path) -> None:
    setup.socket.symlink_to(tmp_path / "elsewhere")
    _refused(setup, "is a symlink")


def test_refuses_a_regular_file_at_the_socket_path(setup: Setup) -> None:
    setup.socket.write_text("not a socket")
    _refused(setup, "is not a socket")
    assert setup.socket.read_text() == "not a socket"


@pytest.mark.root("needs root to chown to another user")
def test_refuses_a_socket_owned_by_another_user(setup: Setup) -> None:
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(setup.socket))
    other.close()
    os.chown(setup.socket, 65534, 65534)
    _refused(setup, "owned by uid 65534")


def test_refuses_a_socket_directory_that_others_can_write(setup: Setup) -> None:
    setup.socket.parent.chmod(0o777)
    _refused(setup, "writable by other users")


def test_refuses_a_listener_that_is_not_an_agent(setup: Setup) -> None:
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(setup.socket))
    hung.listen(5)
    try:
        started = time.monotonic()
        result = cli("run", config=setup.config, timeout=20)
        assert result.returncode == 4, result.stderr
        assert "not a working ssh-agent" in result.stderr
        assert time.monotonic() - started < 10
        status = cli("status", "--json", config=setup.config, timeout=20)
        assert status.returncode == 1
        assert '"state": "down"' in status.stdout
    finally:
        hung.close()


@pytest.mark.parametrize("on_stop", ["stop-agent", "keep-agent"])
def test_sigterm_stops_within_five_seconds_as_configured(
    tmp_path: Path, keys: dict[str, Path], on_stop: str
) -> None:
    setup = make_setup(tmp_path / "inst", agent={"on_stop": on_stop})
    sup = Supervisor(setup).start()
    try:
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"), timeout=2)
        agent_pid = (setup.state() or {})["agent_pid"]
        started = time.monotonic()
        sup.signal(signal.SIGTERM)
        assert sup.wait(timeout=5) == 0
        assert time.monotonic() - started < 5
        state = setup.state()
        assert state is not None
        assert state["supervisor_pid"] is None
        if on_stop == "stop-agent":
            assert not setup.socket.exists()
            assert agent_pids_on(setup.socket) == []
            assert state["state"] == "down"
        else:
            assert agent_pids_on(setup.socket) == [agent_pid]
            again = Supervisor(setup).start(wait_state="ready")
            again.stop()
    finally:
        sup.stop()
        kill_agents_on(setup.socket)


def test_sighup_reloads_and_a_broken_config_keeps_the_old_one(
    setup: Setup, keys: dict[str, Path]
) -> None:
    with running(setup) as sup:
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"), timeout=2)
        original = setup.config.read_text()
        wanted = key_fingerprint(keys["b"])
        setup.config.write_text(
            original.replace(
                "poll_seconds = 0.05", f'poll_seconds = 0.05\nrequired_keys = ["{wanted}"]'
            )
        )
        sup.signal(signal.SIGHUP)
        wait_for(lambda: setup.published("waiting"), timeout=3)
        setup.config.write_text(
            original.replace("poll_seconds = 0.05", 'poll_seconds = "fast"\nbogus = 1')
        )
        sup.signal(signal.SIGHUP)
        wait_for(lambda: "agent.bogus: unknown key" in sup.logtext(), timeout=3)
        assert "agent.poll_seconds: expected a number" in sup.logtext()
        assert sup.proc is not None
        assert sup.proc.poll() is None
        assert setup.published("waiting")


def test_a_second_supervisor_on_the_same_state_dir_is_refused(setup: Setup) -> None:
    with running(setup):
        result = cli("run", config=setup.config, timeout=20)
        assert result.returncode == 4
        assert "already runs" in result.stderr


def test_wait_returns_when_ready_and_times_out_otherwise(
    setup: Setup, keys: dict[str, Path]
) -> None:
    with running(setup):
        started = time.monotonic()
        timed_out = cli("wait", "--timeout", "0.5", config=setup.config)
        assert timed_out.returncode == 1
        assert "not ready after 0.5 s" in timed_out.stderr
        assert time.monotonic() - started < 5
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        assert cli("wait", "--timeout", "5", config=setup.config).returncode == 0


def test_status_says_when_no_supervisor_runs(setup: Setup) -> None:
    result = cli("status", config=setup.config)
    assert result.returncode == 1
    assert "supervisor not running" in result.stdout
    assert "state:       down" in result.stdout


def test_env_prints_each_shell_syntax(setup: Setup) -> None:
    with running(setup):
        assert cli("env", "--shell", "csh", config=setup.config).stdout.startswith(
            f"setenv SSH_AUTH_SOCK {setup.socket};"
        )
        assert cli("env", "--shell", "fish", config=setup.config).stdout.startswith(
            f"set -x SSH_AUTH_SOCK {setup.socket};"
        )
        assert cli("env", config=setup.config).stdout.startswith(
            f"SSH_AUTH_SOCK={setup.socket}; export SSH_AUTH_SOCK;"
        )
