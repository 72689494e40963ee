"""The shipped supervisord program section, run by a real supervisord.

The file under supervisor.d/ is rendered for a private tree (program, config,
user, HOME, log path) and included by a supervisord of our own; the program
runs as user backuppc when possible. What must hold: RUNNING; a SIGKILLed
supervisor is restarted and adopts the same agent with its keys; stop removes
the socket; restart with keep-agent keeps the keys; a stale socket never makes
the program FATAL.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backuppc_agent.install import templates
from tests.e2e.deploy_support import Tree, make_tree
from tests.helpers import agent_pids_on, kill_agents_on, ssh_add, stop_process, wait_for

BIN = Path(sys.executable).parent
SUPERVISORD = BIN / "supervisord"
SUPERVISORCTL = BIN / "supervisorctl"
SHIPPED_LOG = "/var/log/supervisor/backuppc-agent.log"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SUPERVISORD.exists(), reason="supervisor is not installed in the venv"),
    pytest.mark.root("supervisord must be root to run as backuppc"),
]

MAIN_CONF = """\
[unix_http_server]
file=%(here)s/supervisor.sock
chmod=0700

[supervisord]
logfile=%(here)s/supervisord.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/supervisor.sock

[include]
files = conf.d/*.conf
"""


class Supervisord:
    """Our own supervisord, with the shipped program file rendered into conf.d/."""

    def __init__(self, directory: Path, tree: Tree) -> None:
        self.dir = directory
        self.tree = tree
        self.log = directory / "backuppc-agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self) -> None:
        (self.dir / "conf.d").mkdir(parents=True, exist_ok=True)
        (self.dir / "supervisord.conf").write_text(MAIN_CONF)
        program = templates.render(templates.SUPERVISOR, self.tree.values())
        assert SHIPPED_LOG in program
        program = program.replace(SHIPPED_LOG, str(self.log))
        (self.dir / "conf.d" / "backuppc-agent.conf").write_text(program)

    def start(self) -> None:
        self.write()
        self.proc = subprocess.Popen(
            [str(SUPERVISORD), "-c", str(self.dir / "supervisord.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: self.status() == "RUNNING", timeout=30)

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SUPERVISORCTL), "-c", str(self.dir / "supervisord.conf"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def status(self) -> str:
        """The program's supervisord state (RUNNING, STARTING, BACKOFF, FATAL, ...)."""
        fields = self.ctl("status", "backuppc-agent").stdout.split()
        return fields[1] if len(fields) > 1 else ""

    def pid(self) -> int:
        return int(self.ctl("pid", "backuppc-agent").stdout.strip() or 0)

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """TERM supervisord (it stops the program), then KILL its whole session."""
        stop_process(self.proc, grace_seconds=30, group=True)


@contextmanager
def supervised(tmp_path: Path, on_stop: str) -> Iterator[tuple[Supervisord, Tree]]:
    tree = make_tree()
    tree.write_config(on_stop=on_stop)
    daemon = Supervisord(tmp_path / "supervisord", tree)
    try:
        yield daemon, tree
    finally:
        daemon.stop()
        kill_agents_on(tree.socket)
        tree.remove()


def published(tree: Tree) -> dict[str, object]:
    try:
        return dict(json.loads((tree.state_dir / "state.json").read_text()))
    except (OSError, ValueError):
        return {}


def ready_under(tree: Tree, supervisor_pid: int) -> bool:
    state = published(tree)
    return state.get("state") == "ready" and state.get("supervisor_pid") == supervisor_pid


def load_key(tree: Tree, keys: dict[str, Path]) -> int:
    """ssh-add a key (root may use any user's agent); return the agent's pid once ready."""
    added = ssh_add(tree.socket, str(keys["a"]), askpass=keys["askpass"])
    assert added.returncode == 0, added.stderr
    wait_for(lambda: published(tree).get("state") == "ready", timeout=10)
    agent_pid = published(tree)["agent_pid"]
    assert isinstance(agent_pid, int)
    return agent_pid


def test_the_program_runs_as_the_service_user_and_reaches_running(tmp_path: Path) -> None:
    with supervised(tmp_path, "stop-agent") as (daemon, tree):
        daemon.start()
        pid = daemon.pid()
        wait_for(lambda: published(tree).get("supervisor_pid") == pid, timeout=10)
        assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam(tree.user).pw_uid
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"HOME={tree.root}".encode() in environ
        assert published(tree)["state"] == "waiting"
        assert "load keys with" in daemon.logtext()


def test_a_killed_supervisor_is_restarted_and_adopts_the_agent_with_its_keys(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    with supervised(tmp_path, "stop-agent") as (daemon, tree):
        daemon.start()
        agent_pid = load_key(tree, keys)
        old = daemon.pid()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: daemon.pid() not in (0, old) and daemon.status() == "RUNNING", timeout=30)
        new = daemon.pid()
        wait_for(lambda: ready_under(tree, new), timeout=10)
        state = published(tree)
        assert state["agent_pid"] == agent_pid
        assert state["adopted"] is True
        assert agent_pids_on(tree.socket) == [agent_pid]


def test_supervisorctl_stop_ends_the_agent_and_removes_the_socket(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    with supervised(tmp_path, "stop-agent") as (daemon, tree):
        daemon.start()
        load_key(tree, keys)
        result = daemon.ctl("stop", "backuppc-agent")
        assert result.returncode == 0, result.stdout + result.stderr
        assert daemon.status() == "STOPPED"
        assert not tree.socket.exists()
        assert agent_pids_on(tree.socket) == []
        assert published(tree)["state"] == "down"


def test_supervisorctl_restart_with_keep_agent_keeps_the_keys(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    with supervised(tmp_path, "keep-agent") as (daemon, tree):
        daemon.start()
        agent_pid = load_key(tree, keys)
        old = daemon.pid()
        result = daemon.ctl("restart", "backuppc-agent")
        assert result.returncode == 0, result.stdout + result.stderr
        new = daemon.pid()
        assert new != old
        wait_for(lambda: ready_under(tree, new), timeout=10)
        assert published(tree)["agent_pid"] == agent_pid
        assert agent_pids_on(tree.socket) == [agent_pid]


def _stale_socket(tree: Tree) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tree.socket))
    stale.close()
    entry = pwd.getpwnam(tree.user)
    os.chown(tree.socket, entry.pw_uid, entry.pw_gid)


def test_a_stale_socket_at_start_never_makes_the_program_fatal(tmp_path: Path) -> None:
    with supervised(tmp_path, "stop-agent") as (daemon, tree):
        _stale_socket(tree)
        daemon.start()
        pid = daemon.pid()
        wait_for(lambda: published(tree).get("supervisor_pid") == pid, timeout=10)
        assert "removing stale agent socket" in daemon.logtext()
        assert len(agent_pids_on(tree.socket)) == 1


def test_a_crash_of_supervisor_and_agent_together_restarts_cleanly(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    with supervised(tmp_path, "stop-agent") as (daemon, tree):
        daemon.start()
        agent_pid = load_key(tree, keys)
        old = daemon.pid()
        os.kill(agent_pid, signal.SIGKILL)
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: daemon.pid() not in (0, old) and daemon.status() == "RUNNING", timeout=30)
        new = daemon.pid()
        wait_for(lambda: published(tree).get("supervisor_pid") == new, timeout=10)
        assert published(tree)["state"] == "waiting"
        assert "removing stale agent socket" in daemon.logtext()
        assert agent_pid not in agent_pids_on(tree.socket)
        assert len(agent_pids_on(tree.socket)) == 1
