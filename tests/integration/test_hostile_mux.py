"""A control socket (CONTROL_DIR/CLIENT) that answers garbage or nothing, end to end.

A real ssh-agent holds a key, so the pre-dump hook gets past readiness to the
master; ``[mux] ssh`` is a stand-in that records its argv and fails, so no
network is needed. Every command must end within its bound and say why.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from backuppc_agent.metrics.masters import MasterPart
from backuppc_agent.metrics.scrape import ScrapeErrors
from tests.beds import Bed
from tests.helpers import cli, listed_rows, private_dir, stored_summary
from tests.hostile_support import HOSTILE_BEHAVIOURS, listener, runs_of
from tests.scrape import scrape

CLIENT = "web01"
#: What mux.check reports for each behaviour, and the words that say why (a peer that
#: hangs up is seen as EOF or as a reset, depending on who is faster).
EXPECTED = {
    "silent": ("timeout", "did not answer in time"),
    "garbage": ("bad-reply", "exceeds"),
    "huge-length": ("bad-reply", "exceeds"),
    "hangs-up": ("bad-reply", "closed the connection|hung up"),
    "drip": ("timeout", "did not answer in time"),
}


def says_why(behaviour: str, text: str) -> bool:
    return re.search(EXPECTED[behaviour][1], text) is not None


@pytest.fixture
def bed(recording_bed: Bed) -> Bed:
    """The shared bed, with its control dir: hostile listeners bind there before any hook."""
    private_dir(recording_bed.control_dir)
    return recording_bed


def timed(*args: str, config: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = cli(*args, config=config)
    return done, time.monotonic() - started


@pytest.mark.parametrize("behaviour", sorted(HOSTILE_BEHAVIOURS))
def test_master_check_and_list_stay_bounded_and_say_why(bed: Bed, behaviour: str) -> None:
    status = EXPECTED[behaviour][0]
    with listener(bed.socket(CLIENT), HOSTILE_BEHAVIOURS[behaviour]):
        check, check_seconds = timed(
            "master", "check", CLIENT, "--timeout", "0.3", config=bed.config
        )
        listed, list_seconds = timed("master", "list", "--timeout", "0.3", config=bed.config)
        as_json, _ = timed("master", "list", "--json", "--timeout", "0.3", config=bed.config)
    assert check.returncode == 1
    assert check.stdout.startswith(f"{CLIENT}: ")
    assert says_why(behaviour, check.stdout)
    assert check.stdout.count("\n") == 1
    assert listed.returncode == 0
    assert listed_rows(listed.stdout)[0].startswith(f"{CLIENT}\tdead")
    assert says_why(behaviour, listed.stdout)
    rows = json.loads(as_json.stdout)
    assert [(r["client"], r["alive"], r["status"]) for r in rows] == [(CLIENT, False, status)]
    assert says_why(behaviour, rows[0]["detail"])
    assert check_seconds < 5
    assert list_seconds < 5
    assert runs_of(bed.ssh) == []


@pytest.mark.parametrize("behaviour", sorted(HOSTILE_BEHAVIOURS))
def test_pre_dump_replaces_a_hostile_control_socket_within_its_bound(
    bed: Bed, behaviour: str
) -> None:
    with listener(bed.socket(CLIENT), HOSTILE_BEHAVIOURS[behaviour]):
        done, seconds = timed(
            "hook", "pre-dump", "--client", CLIENT, "--host", "root@127.0.0.9", config=bed.config
        )
    assert done.returncode == 6, done.stdout + done.stderr
    assert done.stdout.startswith("backuppc-agent: cannot open ssh master to root@127.0.0.9")
    assert done.stdout.count("\n") == 1
    assert "removing dead control socket" in done.stderr
    assert says_why(behaviour, done.stderr)
    assert "Traceback" not in done.stderr
    # bound: two 1 s mux checks, then ssh (connect_timeout + 5 s at most)
    assert seconds < 2 * 1.0 + 2 + 5 + 3
    # `ssh -G` (does this ssh know WarnWeakCrypto?) connects nowhere: count connections
    runs = [run for run in runs_of(bed.ssh) if "-G" not in run]
    assert len(runs) == 1
    assert f"ControlPath={bed.socket(CLIENT)}" in runs[0]
    assert runs[0][-2:] == ["--", "root@127.0.0.9"]
    summary = stored_summary(bed.state_dir)
    assert summary.runs == {("pre-dump", "ssh-failed"): 1}


@pytest.mark.parametrize("behaviour", sorted(HOSTILE_BEHAVIOURS))
def test_the_master_metrics_show_it_down_and_count_why(
    bed: Bed, behaviour: str, caplog: pytest.LogCaptureFixture
) -> None:
    part = MasterPart(ScrapeErrors(), bed.control_dir, timeout=0.3)
    with listener(bed.socket(CLIENT), HOSTILE_BEHAVIOURS[behaviour]):
        started = time.monotonic()
        scraped = scrape([part])
        seconds = time.monotonic() - started
    assert scraped.value("masters") == 0
    assert scraped.value("master_up", host=CLIENT) == 0
    assert scraped.errors == {"masters": 1}
    assert says_why(behaviour, caplog.text)
    assert seconds < 2


def test_a_stale_socket_is_a_dead_master_but_not_a_scrape_error(bed: Bed) -> None:
    import socket  # noqa: PLC0415

    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(bed.socket(CLIENT)))
    scraped = scrape([MasterPart(ScrapeErrors(), bed.control_dir, timeout=0.3)])
    assert scraped.errors == {"masters": 0}
    listed = cli("master", "list", config=bed.config)
    assert listed_rows(listed.stdout)[0].startswith(f"{CLIENT}\tdead (nothing listens on")
