"""One scrape: run every part, count failures under its ``collector`` label, time it.

A part records failed reads through ``ScrapeErrors`` and still yields what it
could read; an exception escaping a part is counted too and never breaks the others.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from backuppc_agent.state import Snapshot

logger = logging.getLogger(__name__)

PREFIX = "backuppc_agent_"
LOG_REPEAT_SECONDS = 600.0
#: The supervisor's latest snapshot, None before the first one (parts read it at scrape time).
SnapshotSource = Callable[[], Snapshot | None]


class ScrapeErrors:
    """Thread-safe failure counts per collector, logged without flooding the log."""

    def __init__(
        self,
        repeat_seconds: float = LOG_REPEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counts: dict[str, int] = {}
        self._logged: dict[tuple[str, str], float] = {}
        self._repeat = repeat_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def declare(self, collector: str) -> None:
        """Export ``collector`` with a count of 0 until it fails (so rate() works)."""
        with self._lock:
            self._counts.setdefault(collector, 0)

    def record(self, collector: str, detail: str) -> None:
        """Count one failed read; log it at WARNING once per ``repeat_seconds``."""
        with self._lock:
            self._counts[collector] = self._counts.get(collector, 0) + 1
            now, last = self._clock(), self._logged.get((collector, detail))
            due = last is None or now - last >= self._repeat
            if due:
                self._logged[(collector, detail)] = now
        level = logging.WARNING if due else logging.DEBUG
        logger.log(level, "metrics collector %s: %s", collector, detail)

    def counts(self) -> dict[str, int]:
        """A copy of the counts so far."""
        with self._lock:
            return dict(self._counts)


class Part(abc.ABC):
    """A collector of one kind of metric, with its own error label."""

    name: str

    def __init__(self, errors: ScrapeErrors) -> None:
        self.errors = errors
        errors.declare(self.name)

    @abc.abstractmethod
    def collect(self) -> Iterable[Metric]:
        """Build this part's metric families afresh."""

    def fail(self, detail: str) -> None:
        """Count and log a failed read of this part."""
        self.errors.record(self.name, detail)


def gauge(name: str, doc: str, value: float | None = None) -> GaugeMetricFamily:
    """A gauge family with the common prefix (and one sample when ``value`` is given)."""
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def family(
    name: str,
    doc: str,
    labels: Sequence[str],
    samples: Iterable[tuple[Sequence[str], float]],
    kind: type[GaugeMetricFamily | CounterMetricFamily] = GaugeMetricFamily,
) -> Metric:
    """A family of ``kind`` with the common prefix and a sample per (label values, value)."""
    made = kind(PREFIX + name, doc, labels=list(labels))
    for values, value in samples:
        made.add_metric(list(values), value)
    return made


class ScrapeCollector:
    """Runs the parts one scrape at a time and appends the self metrics."""

    def __init__(self, parts: Sequence[Part], errors: ScrapeErrors) -> None:
        self.parts = tuple(parts)
        self.errors = errors
        # Concurrent scrapes would only multiply the /proc walk: serve them in turn.
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        """Yield every part's families, then the scrape's duration and error counts."""
        with self._lock:
            started = time.perf_counter()
            families = [metric for part in self.parts for metric in self._run(part)]
            families.extend(self._self_metrics(time.perf_counter() - started))
        yield from families

    def _run(self, part: Part) -> list[Metric]:
        """One part's families, or none (and a counted error) if it raised."""
        try:
            return list(part.collect())
        except Exception as err:
            logger.exception("metrics collector %s failed", part.name)
            self.errors.record(part.name, f"collector failed: {type(err).__name__}: {err}")
            return []

    def _self_metrics(self, seconds: float) -> list[Metric]:
        """The scrape's own duration and the error counts so far."""
        errors = [([name], count) for name, count in sorted(self.errors.counts().items())]
        doc = "Failed reads per collector since the exporter started."
        return [
            gauge("scrape_duration_seconds", "Time this scrape took.", seconds),
            family("scrape_errors_total", doc, ["collector"], errors, CounterMetricFamily),
        ]
