"""What metrics/ ships: dashboard queries parse and name real metrics; every alert is tested."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SHIPPED = ROOT / "metrics"
DASHBOARD = SHIPPED / "backuppc-agent.dashboard.json"
RULES = SHIPPED / "backuppc-agent.rules.yml"
RULE_TESTS = SHIPPED / "tests" / "backuppc-agent.rules.test.yml"
GOLDEN = ROOT / "tests" / "fixtures" / "metrics" / "golden.prom"
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1d", "$instance": ".*"}
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count")}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def exported_names() -> set[str]:
    """Every series name the exporter writes, from the golden exposition's TYPE lines."""
    names = set()
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            names.update(name + suffix for suffix in _SUFFIXES.get(kind, ()))
    return names


def test_the_dashboard_has_an_id_a_unique_panel_id_each_and_no_overlap() -> None:
    board = dashboard()
    assert (board["uid"], board["title"]) == ("backuppc-agent", "backuppc-agent")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine


def test_the_dashboard_covers_readiness_masters_hooks_and_swap() -> None:
    rows = [panel["title"] for panel in dashboard()["panels"] if panel["type"] == "row"]
    assert rows[:4] == ["Readiness", "SSH masters", "Hooks", "Swap and memory"]
    assert "BackupPC" in rows
    used = " ".join(queries())
    for name in ("ready", "master_up", "hook_runs_total", "swap_in_pages_total",
                 "ssh_agent_swap_bytes", "process_swap_bytes", "backuppc_up",
                 "backuppc_last_backup_end_timestamp_seconds", "backuppc_last_attempt_info",
                 "backuppc_queue_length", "backuppc_pool_bytes"):  # fmt: skip
        assert f"backuppc_agent_{name}" in used


def test_readiness_over_time_sits_beside_the_overdue_hosts() -> None:
    by_title = {panel["title"]: panel for panel in panels()}
    ready, overdue = by_title["SSH auth ready over time"], by_title["BackupPC hosts overdue"]
    assert ready["gridPos"]["y"] == overdue["gridPos"]["y"]
    assert ready["gridPos"]["x"] + ready["gridPos"]["w"] == overdue["gridPos"]["x"]
    rule = re.search(
        r"alert: BackupPCHostOverdue\n\s+expr: >-\n(.*?)\n\s+for:", RULES.read_text(), re.S
    )
    assert rule is not None
    # the panel counts exactly what the alert fires on
    assert "2 * backuppc_agent_backuppc_host_backup_period_seconds" in rule.group(1)
    assert (
        "> bool 2 * backuppc_agent_backuppc_host_backup_period_seconds"
        in (overdue["targets"][0]["expr"])
    )


def test_every_metric_the_dashboard_and_rules_use_is_exported() -> None:
    # the queues exist only while a BackupPC server answers (tests/e2e/test_backuppc_status.py)
    exported = exported_names() | {"backuppc_agent_masters", "backuppc_agent_backuppc_queue_length"}
    text = " ".join(queries()) + RULES.read_text()
    # a name inside a recorded series (instance:backuppc_agent_...:rate5m) is not a metric
    used = set(re.findall(r"(?<![:\w])backuppc_agent_[a-z_]+(?![:\w])", text))
    recorded = set(re.findall(r"record: (\S+)", RULES.read_text()))
    assert used - exported - recorded == set()


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; make system-deps)")
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for number, query in enumerate(queries()):
        expr = query
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        lines += [f"      - record: dashboard:query_{number}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard.rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                             text=True, timeout=30, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_has_a_firing_test_with_its_severity_and_annotations() -> None:
    alerts = re.findall(r"- alert: (\w+)", RULES.read_text())
    assert len(alerts) >= 9
    tests = RULE_TESTS.read_text()
    for alert in alerts:
        firing = (
            rf"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels:"
            r"(.*?)(?=\n\s+- eval_time|\n\n|\Z)"
        )
        block = re.search(firing, tests, re.S)
        assert block, f"{alert} has no firing test"
        assert "severity:" in block.group(1)
        assert "summary:" in block.group(1)
        assert "description:" in block.group(1)
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts: \[\]", tests), (
            f"{alert} has no not-firing test"
        )
