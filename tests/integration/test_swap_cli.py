"""``backuppc-agent swap`` as a subprocess: on this machine's /proc, and on a fixture tree."""

from __future__ import annotations

import json
from pathlib import Path

from backuppc_agent import state
from tests.helpers import Setup, cli, running

KIB = 1024


def meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


def test_on_the_live_machine_it_reports_this_machines_swap_and_the_agent(setup: Setup) -> None:
    with running(setup):
        snapshot = state.read(setup.state_dir)
        assert snapshot is not None
        done = cli("swap", "--json", "--interval", "0.2", config=setup.config)
        screen = cli("swap", "--interval", "0", config=setup.config)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["total_bytes"] == meminfo_kib("SwapTotal") * KIB
    assert report["agent_pid"] == snapshot.agent_pid
    assert isinstance(report["agent_swap_bytes"], int)
    assert report["rates"]["interval_seconds"] == 0.2
    assert report["rates"]["in_pages"] >= 0
    swaps = [proc["swap_bytes"] for proc in report["processes"]]
    assert swaps == sorted(swaps, reverse=True)
    assert all(swap > 0 for swap in swaps)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[2] == "tmpfs"]  # fmt: skip
    assert {entry["mountpoint"] for entry in report["tmpfs"]} <= set(mounts)
    assert screen.returncode == 0, screen.stderr
    assert screen.stdout.startswith("Swap: ")
    assert f"ssh-agent (pid {snapshot.agent_pid}): " in screen.stdout


def test_on_a_fixture_tree_the_top_swapper_comes_first(setup: Setup, procfs_trees: Path) -> None:
    done = cli("swap", "--json", "--interval", "0", "--top", "2",
               "--procfs", str(procfs_trees / "swapping"), config=setup.config)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(p["pid"], p["comm"], p["swap_bytes"]) for p in report["processes"]] == [
        (200, "mysqld", 512000 * KIB),
        (500, "python3", 4096 * KIB),
    ]
    assert report["rates"] is None


def test_a_bad_interval_is_one_line_and_exit_2(setup: Setup) -> None:
    done = cli("swap", "--interval", "-1", config=setup.config)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--interval" in done.stderr
    missing = cli("swap", "--procfs", "/nonexistent", "--interval", "0", config=setup.config)
    assert missing.returncode == 9
    assert "problem: cannot read /nonexistent/meminfo" in missing.stdout
