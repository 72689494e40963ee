"""The running supervisor facing a wedged agent or a hostile listener on its socket.

The probe alone is covered by test_probe_hostile.py; here the whole supervisor
meets them after it started: the state must say why, nothing may hang or
restart in a tight loop, and it must recover once the socket behaves again.
"""

from __future__ import annotations

import os
import re
import signal
import time
import tracemalloc
from pathlib import Path

from backuppc_agent.agent import protocol
from backuppc_agent.agent.probe import probe
from backuppc_agent.unixsock import Failure
from tests.helpers import Setup, cli, make_setup, running, ssh_add, wait_for
from tests.hostile_support import drip, listener

PROBE_TIMEOUT = 0.3


def wedge_setup(tmp_path: Path) -> Setup:
    """A supervisor that probes every 50 ms with a 0.3 s deadline; hooks wait 1 s."""
    return make_setup(
        tmp_path / "inst",
        agent={"probe_timeout_seconds": PROBE_TIMEOUT},
        hooks={"wait_seconds": 1},
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_stopped_agent_is_down_with_the_reason_and_comes_back_with_its_keys(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    setup = wedge_setup(tmp_path)
    with running(setup) as sup:
        assert ssh_add(setup.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
        wait_for(lambda: setup.published("ready"))
        agent = (setup.state() or {})["agent_pid"]
        os.kill(agent, signal.SIGSTOP)
        try:
            wait_for(lambda: setup.published("down"), timeout=5)
            state = setup.state() or {}
            assert "did not answer in time" in state["reason"]
            started = time.monotonic()
            status = cli("status", "--json", config=setup.config)
            hook = cli("hook", "pre-archive", "--client", "web01", config=setup.config)
            assert time.monotonic() - started < 8
            time.sleep(1.0)  # several polls against the wedged agent
            assert sup.proc is not None
            assert sup.proc.poll() is None
            assert _alive(agent)
        finally:
            os.kill(agent, signal.SIGCONT)
        wait_for(lambda: setup.published("ready"), timeout=5)
        after = setup.state() or {}
    assert status.returncode == 1
    assert '"state": "down"' in status.stdout
    assert "did not answer in time" in status.stdout
    assert hook.returncode == 5
    assert hook.stdout.count("\n") == 1
    assert "did not answer in time" in hook.stdout
    assert (after["agent_pid"], after["agent_restarts"], after["identities"]) == (agent, 0, 1)
    log = sup.logtext()
    assert "state ready -> down: listener (pid" in log
    assert "keys are lost" not in log
    assert "restart" not in log.lower()


def test_sigterm_while_the_agent_is_stopped_still_ends_within_five_seconds(
    tmp_path: Path,
) -> None:
    setup = wedge_setup(tmp_path)
    with running(setup) as sup:
        agent = (setup.state() or {})["agent_pid"]
        os.kill(agent, signal.SIGSTOP)
        try:
            wait_for(lambda: setup.published("down"), timeout=5)
            started = time.monotonic()
            sup.signal(signal.SIGTERM)
            code = sup.wait(timeout=10)
            elapsed = time.monotonic() - started
        finally:
            if _alive(agent):
                os.kill(agent, signal.SIGCONT)
    assert code == 0
    assert elapsed < 5
    wait_for(lambda: not _alive(agent), timeout=5)
    assert setup.published("down")


def test_a_hostile_listener_in_the_agents_place_is_refused_with_backoff_then_replaced(
    tmp_path: Path,
) -> None:
    setup = wedge_setup(tmp_path)
    with running(setup) as sup:
        agent = (setup.state() or {})["agent_pid"]
        # Freeze the supervisor so the agent's death and the impostor land together.
        sup.signal(signal.SIGSTOP)
        try:
            os.kill(agent, signal.SIGKILL)
            wait_for(lambda: not _alive(agent) or _zombie(agent))
            setup.socket.unlink()
            # Announces a 16 MiB reply (the largest accepted) and drips it a byte at a time.
            with listener(setup.socket, drip(protocol.MAX_REPLY_BYTES, every=0.05)):
                sup.signal(signal.SIGCONT)
                wait_for(lambda: sup.logtext().count("cannot restart ssh-agent") >= 3, timeout=10)
                state = setup.state() or {}
                assert sup.proc is not None
                assert sup.proc.poll() is None
        finally:
            sup.signal(signal.SIGCONT)
        wait_for(lambda: setup.published("waiting"), timeout=15)
        after = setup.state() or {}
    assert state["state"] == "down"
    assert "did not answer in time" in state["reason"]
    log = sup.logtext()
    assert "not a working ssh-agent" in log
    delays = [
        float(d) for d in re.findall(r"cannot restart ssh-agent: .*next try in ([\d.]+) s", log)
    ]
    assert delays[:3] == [0.5, 1.0, 2.0], delays
    assert after["agent_restarts"] == 1
    assert after["agent_pid"] not in (None, agent)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_slow_sixteen_mib_reply_is_cut_off_at_the_deadline_with_bounded_memory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.socket"
    with listener(path, drip(protocol.MAX_REPLY_BYTES, every=0.01)):
        tracemalloc.start()
        try:
            started = time.monotonic()
            result = probe(path, 0.5)
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.status is Failure.TIMEOUT
    assert elapsed < 1.5
    # at most the one reply buffer the protocol allows, never a multiple of it
    assert peak < protocol.MAX_REPLY_BYTES + (1 << 20)


def test_a_four_gib_announcement_allocates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "agent.socket"
    with listener(path, drip(0xFFFFFFFF)):
        tracemalloc.start()
        try:
            result = probe(path, 0.5)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.status is Failure.BAD_REPLY
    assert "4294967295-byte reply" in result.detail
    assert peak < 1 << 20
