"""The one way tests read metrics: a scrape's exposition, parsed by prometheus_client's parser.

A scrape is of a URL (the live endpoint, over HTTP or HTTPS) or, in a fresh registry,
of collector parts run through a ScrapeCollector as the exporter runs them. Either way
the test reads what Prometheus would: the text exposition, not the collector's objects.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from backuppc_agent.metrics.scrape import PREFIX, Part, ScrapeCollector


def fetch(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """GET ``url``; return (status, body) for any HTTP status."""
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


@dataclass(frozen=True)
class Scraped:
    """One scrape: its HTTP status, its text, its families (none unless the status is 200).

    Names are given without the common ``backuppc_agent_`` prefix.
    """

    status: int
    text: str = field(repr=False)
    families: tuple[Metric, ...] = field(repr=False)

    @property
    def samples(self) -> list[Sample]:
        """Every sample of every family."""
        return [sample for family in self.families for sample in family.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the sample ``name`` with exactly ``labels``; None if there is none."""
        for sample in self.samples:
            if sample.name == PREFIX + name and sample.labels == labels:
                return sample.value
        return None

    def by(self, name: str, label: str) -> dict[str, float]:
        """The samples called ``name``, keyed by the value of their ``label``."""
        return {s.labels[label]: s.value for s in self.samples if s.name == PREFIX + name}

    @property
    def errors(self) -> dict[str, float]:
        """``scrape_errors_total`` per collector."""
        return self.by("scrape_errors_total", "collector")

    def has(self, family: str) -> bool:
        """Whether the exposition declares ``family`` (samples or not)."""
        return any(f.name == PREFIX + family for f in self.families)


def scrape(source: str | Sequence[Part], context: ssl.SSLContext | None = None) -> Scraped:
    """Scrape the URL ``source``, or the parts ``source`` (sharing one ScrapeErrors) once."""
    if isinstance(source, str):
        status, text = fetch(source, context)
    else:
        registry = CollectorRegistry()
        registry.register(ScrapeCollector(source, source[0].errors))
        status, text = 200, generate_latest(registry).decode()
    families = tuple(text_string_to_metric_families(text)) if status == 200 else ()
    return Scraped(status, text, families)
