"""A golden exposition of the whole endpoint on a fixture tree, checked with promtool.

Set UPDATE_GOLDEN=1 to rewrite tests/fixtures/metrics/golden.prom after an
intended change, and review the diff: metric names are an interface.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent import __version__, config
from backuppc_agent.events import EventStore, HookRecord
from backuppc_agent.metrics.exporter import Exporter
from backuppc_agent.state import Snapshot, State
from tests.bpc_tree import make_tree
from tests.helpers import private_dir, statvfs_of
from tests.scrape import fetch, scrape

GOLDEN = Path(__file__).parent.parent / "fixtures" / "metrics" / "golden.prom"
RECORDS = [
    HookRecord(1_700_000_000.0, "pre-dump", "client1", "ok", 0.05),
    HookRecord(1_700_000_060.0, "pre-dump", "client2", "ok", 1.5),
    HookRecord(1_700_000_120.0, "pre-dump", "client3", "not-ready", 30.0),
    HookRecord(1_700_000_180.0, "post-dump", "client1", "ok", 0.0),
    HookRecord(1_700_000_240.0, "pre-dump", "client3", "ssh-failed", 0.2),
]
#: What the supervisor publishes when ready: the agent answers and holds the key.
READY = Snapshot(
    state=State.READY,
    reason="1 key loaded",
    socket="/s",
    agent_pid=100,
    identities=1,
    fingerprints=("SHA256:" + "A" * 43,),
    since=1_700_000_000.5,
    supervisor_pid=7,
    agent_restarts=2,
    agent_up=True,
    expires=1_700_003_600.0,
)
TMPFS = {"/dev/shm": (1000, 250), "/sys/fs/cgroup": (10, 10), "/run": (500, 499)}

fake_statvfs = statvfs_of(TMPFS)


def _backuppc_tree(root: Path) -> dict[str, str]:
    """A BackupPC with a backed-up host, a failing one and a new one; its server is down."""
    settings = make_tree(
        root,
        {"web1": [("full", 1_699_990_000, 1_699_990_600), ("incr", 1_699_999_000, 1_699_999_100)],
         "db": [("partial", 1_699_999_500, 1_699_999_900)], "new": []},
        {"db": ("Reason_backup_failed", "DumpPreUserCmd returned error status 1280"),
         "web1": ("Reason_backup_done", "")},
    )  # fmt: skip
    keys = ("top_dir", "conf_dir", "log_dir", "run_dir")
    return {key: str(getattr(settings, key)) for key in keys}


@pytest.fixture
def exporter(tmp_path: Path, procfs_trees: Path, free_port: int) -> Iterator[Exporter]:
    state_dir = private_dir(tmp_path / "state")
    with EventStore(state_dir) as store:
        for record in RECORDS:
            store.record(record)
    settings = config.from_mapping(
        {
            "metrics": {"listen": f"127.0.0.1:{free_port}"},
            "state": {"dir": str(state_dir)},
            # a control dir that was never created: no masters (paths must stay short)
            "mux": {"control_dir": f"/tmp/bpa-golden-{os.getpid()}-none"},
            "swap": {"top_processes": 3},
            "backuppc": _backuppc_tree(tmp_path / "backuppc"),
        },
        "golden",
    )
    served = Exporter(settings, statvfs=fake_statvfs, procfs=procfs_trees / "swapping")
    served.on_snapshot(None, READY)
    try:
        yield served
    finally:
        served.close()


def url(exporter: Exporter, path: str) -> str:
    host, port = exporter.address
    return f"http://{host}:{port}{path}"


def normalize(body: str) -> str:
    """Replace what changes from run to run: the scrape's duration and the version."""
    body = re.sub(r"^(backuppc_agent_scrape_duration_seconds) \S+$", r"\1 DURATION", body,
                  flags=re.MULTILINE)  # fmt: skip
    return body.replace(f'version="{__version__}"', 'version="VERSION"')


def test_the_whole_endpoint_matches_the_golden_exposition(exporter: Exporter) -> None:
    scraped = scrape(url(exporter, "/metrics"))
    assert scraped.status == 200
    body = scraped.text
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(normalize(body))
    assert normalize(body) == GOLDEN.read_text()


def test_the_golden_readiness_is_a_state_the_supervisor_can_publish(exporter: Exporter) -> None:
    """Ready means the agent answers and holds a key: the golden must not freeze less."""
    scraped = scrape(url(exporter, "/metrics"))
    assert scraped.value("ready") == 1
    assert scraped.value("state", state="ready") == 1
    assert scraped.value("ssh_agent_up") == 1
    assert (scraped.value("identities") or 0) >= 1


def test_the_exposition_passes_promtool_check_metrics(exporter: Exporter) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; make system-deps)")
    body = scrape(url(exporter, "/metrics")).text
    checked = subprocess.run([promtool, "check", "metrics"], input=body, text=True,
                             capture_output=True, timeout=30, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ready_answers_200_with_the_reason(exporter: Exporter) -> None:
    assert fetch(url(exporter, "/ready")) == (200, "ready: 1 key loaded\n")


def test_other_paths_are_not_found(exporter: Exporter) -> None:
    assert fetch(url(exporter, "/metricsx"))[0] == 404
    status, index = fetch(url(exporter, "/"))
    assert status == 200
    assert 'href="/metrics"' in index
