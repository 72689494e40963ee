"""The shipped rules in a real Prometheus and Alertmanager, against a real supervisor.

Debian's prometheus and prometheus-alertmanager scrape and evaluate every
second (tests/prometheus_stack.py: ``for:`` durations read as seconds, nothing
else changed). The supervisor runs its own ssh-agent, real hooks record real
runs, a real ssh master is opened to an sshd on loopback and killed, and a
BackupPC tree holds a host whose last good backup is long past. The tests run
in file order: each drives one event and asserts through Prometheus's HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backuppc_agent import state
from backuppc_agent.ssh.master import list_masters
from tests.bpc_tree import make_tree
from tests.helpers import Setup, cli, make_setup, running, ssh_add, wait_for
from tests.prometheus_stack import ALERTMANAGER, PROMETHEUS, Prometheus, monitoring
from tests.scrape import scrape
from tests.sshd import needs_root, running_sshd

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="needs Debian's prometheus and prometheus-alertmanager (make system-deps)",
)
DASHBOARD = (
    Path(__file__).resolve().parent.parent.parent / "metrics" / "backuppc-agent.dashboard.json"
)
#: Outside the addresses other sshd tests use.
SSHD_ADDRESS = "127.0.0.43"
ALERT_SECONDS = 40
BACKUPPC_DIRS = ("top_dir", "conf_dir", "log_dir", "run_dir")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stack:
    setup: Setup
    api: Prometheus
    keys: dict[str, Path]
    metrics: str
    control_dir: Path
    known_hosts: Path

    def ssh_add(self) -> None:
        done = ssh_add(self.setup.socket, str(self.keys["a"]), askpass=self.keys["askpass"])
        assert done.returncode == 0, done.stderr

    def hook(self, *args: str) -> int:
        return cli("hook", *args, config=self.setup.config, timeout=60).returncode

    def state(self, alert: str, **labels: str) -> str | None:
        return self.api.alert_state(alert, **labels)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("prom")
    work.chmod(0o700)
    port = _free_port()
    now = int(time.time())
    # web1 is backed up every 86 s (0.001 days); its last good backup ended an hour ago
    tree = make_tree(
        work / "bpc",
        {"web1": [("full", now - 7200, now - 3600)]},
        {"web1": ("Reason_backup_failed", "DumpPreUserCmd returned error status 1280")},
        main_conf="$Conf{FullPeriod} = 0.001;\n$Conf{IncrPeriod} = 0.001;\n",
    )
    control_dir = Path(tempfile.mkdtemp(prefix="bpa-pm-"))
    known_hosts = work / "known_hosts"
    known_hosts.write_text("")
    setup = make_setup(
        work / "inst",
        metrics={"listen": f"127.0.0.1:{port}"},
        hooks={"wait_seconds": 0, "connect_timeout_seconds": 2},
        mux={"control_dir": control_dir, "known_hosts": known_hosts},
        backuppc={key: getattr(tree, key) for key in BACKUPPC_DIRS},
    )
    try:
        with (
            running(setup),
            monitoring(work, f"127.0.0.1:{port}", _free_port(), _free_port()) as api,
        ):
            yield Stack(setup, api, keys, f"127.0.0.1:{port}", control_dir, known_hosts)
    finally:
        for info in list_masters(control_dir):
            if info.pid:
                os.kill(info.pid, signal.SIGKILL)
        for entry in control_dir.iterdir():
            entry.unlink()
        control_dir.rmdir()


def test_not_ready_is_pending_then_gone_once_keys_are_loaded(stack: Stack) -> None:
    wait_for(lambda: stack.state("BackupPCAgentNotReady") == "pending", timeout=ALERT_SECONDS)
    stack.ssh_add()
    wait_for(lambda: stack.state("BackupPCAgentNotReady") is None, timeout=ALERT_SECONDS)


def test_the_first_bad_name_and_first_ssh_failed_fire_their_alerts(stack: Stack) -> None:
    assert stack.hook("pre-dump", "--client", "../evil", "--host", "x@127.0.0.1") == 7
    assert stack.hook("pre-dump", "--client", "web9", "--host", "nobody@127.0.0.1") == 6
    labels = {"hook": "pre-dump", "result": "bad-name"}
    wait_for(lambda: stack.state("BackupPCAgentHooksFailing", **labels) == "firing",
             timeout=ALERT_SECONDS)  # fmt: skip
    wait_for(lambda: stack.state("BackupPCAgentMastersFailing") == "firing", timeout=ALERT_SECONDS)


def test_a_firing_alert_reaches_the_webhook_through_alertmanager(stack: Stack) -> None:
    webhook = stack.api.webhook
    wait_for(lambda: "BackupPCAgentHooksFailing" in webhook.alert_names(), timeout=ALERT_SECONDS)
    body = next(b for b in webhook.bodies if "BackupPCAgentHooksFailing" in json.dumps(b))
    assert body["receiver"] == "backup-admins"
    assert body["groupLabels"] == {"job": "backuppc-agent", "instance": stack.metrics}


def test_a_sigkilled_ssh_agent_fires_the_restart_alert(stack: Stack) -> None:
    snapshot = state.read(stack.setup.state_dir)
    assert snapshot is not None
    assert snapshot.agent_pid is not None
    os.kill(snapshot.agent_pid, signal.SIGKILL)
    wait_for(lambda: stack.state("BackupPCAgentSSHAgentRestarted") == "firing",
             timeout=ALERT_SECONDS)  # fmt: skip


@needs_root
def test_a_killed_master_makes_its_alert_pending(stack: Stack) -> None:
    stack.ssh_add()  # the restarted agent lost its keys
    with running_sshd(SSHD_ADDRESS, stack.keys["a"]) as sshd:
        stack.known_hosts.write_text(sshd.known_hosts_line())
        assert (
            stack.hook("pre-dump", "--client", "web2", "--host", f"bpaclient@{SSHD_ADDRESS}") == 0
        )
        wait_for(lambda: stack.api.query('backuppc_agent_master_up{host="web2"} == 1'),
                 timeout=ALERT_SECONDS)  # fmt: skip
        (master,) = [info for info in list_masters(stack.control_dir) if info.pid]
        assert master.pid is not None
        os.kill(master.pid, signal.SIGKILL)
        wait_for(lambda: stack.state("BackupPCAgentMasterDown", host="web2") == "pending",
                 timeout=ALERT_SECONDS)  # fmt: skip


def test_an_overdue_host_fires_with_the_reason_and_a_down_backuppc_too(stack: Stack) -> None:
    wait_for(lambda: stack.state("BackupPCHostOverdue", host="web1") == "firing",
             timeout=ALERT_SECONDS)  # fmt: skip
    (alert,) = [a for a in stack.api.alerts() if a["labels"]["alertname"] == "BackupPCHostOverdue"]
    assert "Last attempt: failed (keys-not-loaded)." in alert["annotations"]["description"]
    wait_for(lambda: stack.state("BackupPCServerDown") == "firing", timeout=ALERT_SECONDS)


def _exported_names(stack: Stack) -> set[str]:
    return {sample.name for sample in scrape(f"http://{stack.metrics}/metrics").samples}


def test_every_dashboard_query_runs_and_has_data_where_the_exporter_has(stack: Stack) -> None:
    exported = _exported_names(stack)
    board = json.loads(DASHBOARD.read_text())
    variables = {"$__rate_interval": "1m", "$__range": "1h", "$instance": ".*"}
    empty = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in variables.items():
                expr = expr.replace(name, value)
            result = stack.api.query(expr)  # raises unless Prometheus says "success"
            used = set(re.findall(r"backuppc_agent_\w+", expr))
            if used <= exported and not result:
                empty.append((panel["title"], expr))
    assert empty == []
