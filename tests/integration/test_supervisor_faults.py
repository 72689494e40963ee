"""Supervisor faults: a full state dir, wall-clock jumps, and the add command."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.faults_support import LIBFAKETIME, faketime_env, fill, set_clock, small_tmpfs
from tests.helpers import (
    CLI,
    Setup,
    Supervisor,
    cli,
    kill_agents_on,
    make_setup,
    running,
    ssh_add,
    wait_for,
)


@pytest.mark.root("needs root to mount a small tmpfs")
def test_a_full_state_dir_keeps_the_agent_and_says_so(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    setup = make_setup(tmp_path / "inst")
    with small_tmpfs(setup.state_dir, "64k"), running(setup) as sup:
        filler = fill(setup.state_dir)
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: "cannot publish state" in sup.logtext(), timeout=5)
        status = cli("status", "--json", config=setup.config)
        assert json.loads(status.stdout)["state"] == "ready"
        assert sup.proc is not None
        assert sup.proc.poll() is None
        assert not setup.published("ready")
        filler.unlink()
        wait_for(lambda: setup.published("ready"), timeout=5)
        assert sup.logtext().count("cannot publish state") == 1


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs Debian's faketime package")
def test_wall_clock_jumps_do_not_disturb_polling(tmp_path: Path, keys: dict[str, Path]) -> None:
    # libfaketime breaks time.sleep() when the monotonic clock is left real, and
    # only the steady-state loop (select with a timeout) avoids it: so a normal
    # supervisor starts the agent (kept on stop) and the faked one adopts it.
    setup = make_setup(tmp_path / "inst", agent={"on_stop": "keep-agent"})
    Supervisor(setup).start().stop()
    clock = tmp_path / "faketime"
    set_clock(clock, "+0")
    env = faketime_env(clock)
    log = tmp_path / "faked.log"
    with log.open("wb") as out:
        faked = subprocess.Popen(
            [CLI, "--config", str(setup.config), "run"],
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: (setup.state() or {}).get("supervisor_pid") == faked.pid)
        set_clock(clock, "-3600")
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"), timeout=3)
        since_back = (setup.state() or {})["since"]
        set_clock(clock, "+86400")
        assert ssh_add(setup.socket, "-D").returncode == 0
        wait_for(lambda: setup.published("waiting"), timeout=3)
        state = setup.state() or {}
        assert state["since"] - since_back > 86400
        assert state["agent_restarts"] == 0
        assert faked.poll() is None, log.read_text()
    finally:
        faked.terminate()
        faked.wait(timeout=10)
        kill_agents_on(setup.socket)


def test_add_runs_ssh_add_against_the_agent_and_reports(
    setup: Setup, keys: dict[str, Path]
) -> None:
    with running(setup):
        env = dict(
            os.environ,
            SSH_ASKPASS=str(keys["askpass"]),
            SSH_ASKPASS_REQUIRE="force",
            DISPLAY=":0",
            SSH_AUTH_SOCK="/nonexistent",
        )
        result = subprocess.run(
            [CLI, "--config", str(setup.config), "add", str(keys["a"])],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "backuppc-agent: ready: 1 key loaded" in result.stderr
        listed = subprocess.run(
            [CLI, "--config", str(setup.config), "add", "-l"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert "test-id_a" in listed.stdout
        missing = cli("add", str(keys["a"]) + ".nope", config=setup.config)
        assert missing.returncode != 0
