"""The hook part's families from a summary, and the hook CLI recording unexpected failures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from backuppc_agent.backuppc import hooks
from backuppc_agent.cli import hook as hook_cli
from backuppc_agent.cli.main import main
from backuppc_agent.events import HOOK_RESULTS, EventStore, HookSummary
from backuppc_agent.metrics.hooks import HookPart
from backuppc_agent.metrics.scrape import ScrapeErrors
from tests.helpers import make_setup
from tests.scrape import scrape

EMPTY = HookSummary({}, ((math.inf, 0),), 0.0, 0, {})


def part(summary: HookSummary) -> HookPart:
    return HookPart(ScrapeErrors(), Path("/nonexistent"), reader=lambda _dir: summary)


def test_every_result_a_hook_can_record_is_exported_at_zero_before_any_run() -> None:
    samples = scrape([part(EMPTY)]).samples
    runs = {(s.labels["hook"], s.labels["result"]): s.value
            for s in samples if s.name == "backuppc_agent_hook_runs_total"}  # fmt: skip
    expected = {(hook, result) for hook, results in HOOK_RESULTS.items() for result in results}
    assert set(runs) == expected
    assert set(runs.values()) == {0}
    assert set(HOOK_RESULTS) == set(hooks.HOOKS)
    assert ("pre-dump", "ssh-failed") in runs
    assert ("pre-archive", "ssh-failed") not in runs  # archives stay local


def test_recorded_runs_replace_the_zeros_and_last_success_is_labelled_host() -> None:
    summary = HookSummary({("pre-dump", "bad-name"): 3}, EMPTY.wait_buckets, 0.0, 0, {"web1": 5.0})
    scraped = scrape([part(summary)])
    assert scraped.value("hook_runs_total", hook="pre-dump", result="bad-name") == 3
    assert scraped.value("last_success_timestamp_seconds", host="web1") == 5.0


def _raise(*_args: object) -> hooks.Outcome:
    raise RuntimeError("a bug")


@pytest.mark.parametrize(("hook", "code", "said"), [
    ("pre-dump", 70, "backuppc-agent: internal error: RuntimeError: a bug (rerun with --debug)\n"),
    ("post-dump", 0, "backuppc-agent: post-dump: a bug (post hooks never fail a backup)\n"),
])  # fmt: skip
def test_an_unexpected_failure_is_recorded_as_error_and_said_in_the_xferlog(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hook: str,
    code: int,
    said: str,
) -> None:
    setup = make_setup(tmp_path / "inst")
    # the bug is injected: no real input makes a hook raise anything but its own errors
    monkeypatch.setattr(hook_cli.hooks, "pre_hook", _raise)
    monkeypatch.setattr(hook_cli.hooks, "post_hook", _raise)
    argv = ["--config", str(setup.config), "hook", hook, "--client", "web1", "--xfer-ok", "1"]
    assert main(argv) == code  # pre: internal error (70); post hooks never fail a backup
    with EventStore(setup.state_dir) as store:
        assert store.summary().runs == {(hook, "error"): 1}
    out, err = capsys.readouterr()  # BackupPC puts both in the XferLOG
    assert out + err == said
