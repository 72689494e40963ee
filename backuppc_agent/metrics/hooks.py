"""Hook outcomes from the store the hooks write (no prometheus_client multiprocess mode).

Hooks are short-lived processes; they record each run in the SQLite store of
the state directory, and this part reads its aggregates at scrape time. The
store is opened per scrape because every scrape runs in its own HTTP thread
and an sqlite3 connection belongs to the thread that opened it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from backuppc_agent.events import HOOK_RESULTS, EventStore, EventStoreError, HookSummary
from backuppc_agent.metrics.scrape import PREFIX, Part, ScrapeErrors, family

SummaryReader = Callable[[Path], HookSummary]


def read_summary(state_dir: Path) -> HookSummary:
    """Open the store, read its aggregates, close it; raise EventStoreError."""
    with EventStore(state_dir) as store:
        return store.summary()


class HookPart(Part):
    """Runs per hook and result, the readiness-wait histogram, last success per host."""

    name = "hooks"

    def __init__(
        self, errors: ScrapeErrors, state_dir: Path, reader: SummaryReader = read_summary
    ) -> None:
        super().__init__(errors)
        self.state_dir = state_dir
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        """Yield the three hook families; nothing (and a counted error) if the store fails."""
        try:
            summary = self.reader(self.state_dir)
        except EventStoreError as err:
            self.fail(str(err))
            return
        yield _runs(summary)
        yield _waits(summary)
        yield _last_success(summary)


def _runs(summary: HookSummary) -> Metric:
    """backuppc_agent_hook_runs_total: every (hook, result) a hook can record, 0 until seen.

    A series born at 1 has increase() = 0 in Prometheus, so an alert on the first
    failure of an instance would never fire: every known pair exists from the start.
    """
    runs = {(hook, result): 0 for hook, results in HOOK_RESULTS.items() for result in results}
    runs.update(summary.runs)
    return family(
        "hook_runs_total",
        "BackupPC hook runs by hook and result "
        "(ok, failed, not-ready, ssh-failed, bad-name, error).",
        ["hook", "result"],
        sorted(runs.items()),
        CounterMetricFamily,
    )


def _waits(summary: HookSummary) -> HistogramMetricFamily:
    """backuppc_agent_hook_wait_seconds from the store's cumulative buckets."""
    # as prometheus_client writes a bound: "0.5", "1.0", "+Inf"
    buckets = [("+Inf" if math.isinf(bound) else repr(float(bound)), float(count))
               for bound, count in summary.wait_buckets] or [("+Inf", 0.0)]  # fmt: skip
    return HistogramMetricFamily(
        PREFIX + "hook_wait_seconds",
        "How long gating hooks waited for SSH keys before going on or giving up.",
        buckets=buckets,
        sum_value=summary.wait_sum,
    )


def _last_success(summary: HookSummary) -> Metric:
    """backuppc_agent_last_success_timestamp_seconds per BackupPC host (label ``host``)."""
    return family(
        "last_success_timestamp_seconds",
        "When a hook for this BackupPC host last ended ok (Unix time).",
        ["host"],
        [([host], when) for host, when in sorted(summary.last_success.items())],
    )
