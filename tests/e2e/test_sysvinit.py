"""The shipped sysvinit script, driven for real: start, status, reload, stop.

start-stop-daemon backgrounds the foreground supervisor as user backuppc
(when it can run our code; else root), writes the pid file and sends the
output to the log file. Only the pid file, log file and defaults file are moved
into the test's own directory; everything else is the script as shipped.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent.install import templates
from backuppc_agent.proc import pid_alive
from tests.e2e.deploy_support import Tree, make_tree
from tests.helpers import agent_pids_on, kill_agents_on, ssh_add, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root("init scripts run as root"),
    pytest.mark.skipif(
        not shutil.which("start-stop-daemon") or not Path("/lib/lsb/init-functions").exists(),
        reason="needs Debian's start-stop-daemon and lsb-base",
    ),
]

MOVED = {
    "PIDFILE=/run/backuppc-agent.pid": "PIDFILE={dir}/backuppc-agent.pid",
    "LOGFILE=/var/log/backuppc-agent.log": "LOGFILE={dir}/backuppc-agent.log",
    "DEFAULTS=/etc/default/backuppc-agent": "DEFAULTS={dir}/default",
}


class InitScript:
    """The rendered script in a directory of its own."""

    def __init__(self, directory: Path, tree: Tree) -> None:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        directory.chmod(0o755)
        self.dir = directory
        text = templates.render(templates.SYSVINIT, tree.values())
        for old, new in MOVED.items():
            assert old in text, old
            text = text.replace(old, new.format(dir=directory))
        self.path = directory / "backuppc-agent"
        self.path.write_text(text)
        self.path.chmod(0o755)

    @property
    def pidfile(self) -> Path:
        return self.dir / "backuppc-agent.pid"

    @property
    def log(self) -> Path:
        return self.dir / "backuppc-agent.log"

    def __call__(self, action: str) -> subprocess.CompletedProcess[str]:
        # Without systemd running, lsb's init-functions leave the script alone;
        # the variable also keeps a systemd host from redirecting to systemctl.
        env = {"PATH": os.environ["PATH"], "_SYSTEMCTL_SKIP_REDIRECT": "1"}
        return subprocess.run(
            ["/bin/sh", str(self.path), action],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )

    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def script(tmp_path: Path) -> Iterator[tuple[InitScript, Tree]]:
    tree = make_tree()
    init = InitScript(tmp_path / "init", tree)
    try:
        yield init, tree
    finally:
        if init.pidfile.exists() and pid_alive(init.pid()):
            os.kill(init.pid(), signal.SIGKILL)
        kill_agents_on(tree.socket)
        tree.remove()


def state(tree: Tree) -> str:
    try:
        text = (tree.state_dir / "state.json").read_text()
    except OSError:
        return ""
    return text


def test_start_status_stop_run_the_supervisor_as_the_service_user(
    script: tuple[InitScript, Tree], keys: dict[str, Path]
) -> None:
    init, tree = script
    started = init("start")
    assert started.returncode == 0, started.stdout + started.stderr
    pid = init.pid()
    account = pwd.getpwnam(tree.user)
    assert Path(f"/proc/{pid}").stat().st_uid == account.pw_uid
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"HOME={account.pw_dir}".encode() in environ
    wait_for(lambda: f'"supervisor_pid": {pid}' in state(tree), timeout=15)
    status = init("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "is running" in status.stdout
    assert ssh_add(tree.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
    wait_for(lambda: '"state": "ready"' in state(tree), timeout=10)
    stopped = init("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not pid_alive(pid)
    assert not init.pidfile.exists()
    assert not tree.socket.exists()
    assert agent_pids_on(tree.socket) == []
    assert init("status").returncode == 3
    assert "starting" in init.logtext()


def test_start_twice_keeps_one_supervisor_and_stop_twice_is_fine(
    script: tuple[InitScript, Tree],
) -> None:
    init, tree = script
    assert init("start").returncode == 0
    pid = init.pid()
    wait_for(lambda: f'"supervisor_pid": {pid}' in state(tree), timeout=15)
    again = init("start")
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert init.pid() == pid
    assert init("stop").returncode == 0
    second = init("stop")
    assert second.returncode == 0
    assert "not running" in second.stdout


def test_reload_sends_sighup_and_the_agent_keeps_its_keys(
    script: tuple[InitScript, Tree], keys: dict[str, Path]
) -> None:
    init, tree = script
    assert init("start").returncode == 0
    pid = init.pid()
    wait_for(lambda: f'"supervisor_pid": {pid}' in state(tree), timeout=15)
    assert ssh_add(tree.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
    wait_for(lambda: '"state": "ready"' in state(tree), timeout=10)
    reloaded = init("reload")
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    wait_for(lambda: "configuration reloaded" in init.logtext(), timeout=10)
    assert init.pid() == pid
    assert '"state": "ready"' in state(tree)
    assert init("stop").returncode == 0


def test_restart_with_keep_agent_keeps_the_keys(
    script: tuple[InitScript, Tree], keys: dict[str, Path]
) -> None:
    init, tree = script
    tree.write_config(on_stop="keep-agent")
    assert init("start").returncode == 0
    first = init.pid()
    wait_for(lambda: f'"supervisor_pid": {first}' in state(tree), timeout=15)
    assert ssh_add(tree.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
    wait_for(lambda: '"state": "ready"' in state(tree), timeout=10)
    agents = agent_pids_on(tree.socket)
    restarted = init("restart")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    second = init.pid()
    assert second != first
    wait_for(lambda: f'"supervisor_pid": {second}' in state(tree), timeout=15)
    wait_for(lambda: '"state": "ready"' in state(tree), timeout=10)
    assert agent_pids_on(tree.socket) == agents
    assert init("stop").returncode == 0


def test_status_as_root_shows_the_service_users_agent_not_a_foreign_one(
    script: tuple[InitScript, Tree], keys: dict[str, Path]
) -> None:
    init, tree = script
    if tree.user == "root":
        pytest.skip("the supervisor runs as root here: nothing foreign to see")
    assert init("start").returncode == 0
    pid = init.pid()
    wait_for(lambda: f'"supervisor_pid": {pid}' in state(tree), timeout=15)
    argv = [str(tree.program), "--config", str(tree.config), "status"]
    shown = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert shown.returncode == 1, shown.stdout + shown.stderr  # no keys yet: waiting
    uid = pwd.getpwnam(tree.user).pw_uid
    assert shown.stdout.startswith(f"agent of:    {tree.user} (uid {uid})\n"), shown.stdout
    assert "state:       waiting" in shown.stdout
    assert "foreign" not in shown.stdout
    assert ssh_add(tree.socket, str(keys["a"]), askpass=keys["askpass"]).returncode == 0
    wait_for(lambda: '"state": "ready"' in state(tree), timeout=10)
    argv.append("--json")
    ready = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert '"user": "backuppc"' in ready.stdout
    assert init("stop").returncode == 0


def test_start_before_install_wrote_the_config_is_quiet_and_starts_nothing(
    script: tuple[InitScript, Tree],
) -> None:
    init, tree = script
    tree.config.unlink()
    started = init("start")
    assert started.returncode == 0, started.stdout + started.stderr
    out = started.stdout + started.stderr
    assert f"no {tree.config} yet (run: backuppc-agent install)" in out
    assert not init.pidfile.exists()
    assert agent_pids_on(tree.socket) == []
