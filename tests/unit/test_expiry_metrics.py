"""Expiry and unusable-key metrics from the supervisor's snapshot."""

from __future__ import annotations

import dataclasses

from backuppc_agent.metrics.readiness import ReadinessPart
from backuppc_agent.metrics.scrape import ScrapeErrors
from backuppc_agent.state import State
from tests.scrape import scrape
from tests.unit.test_metrics_collectors import snapshot


def test_the_expiry_timestamp_and_warning_are_exported_with_unusable_keys_by_reason() -> None:
    snap = dataclasses.replace(
        snapshot(State.WAITING),
        expires=1_700_003_600.0,
        unusable=(("SHA256:a", "refused"), ("SHA256:b", "expired"), ("SHA256:c", "expired")),
    )
    scraped = scrape([ReadinessPart(ScrapeErrors(), lambda: snap, 900)])
    assert scraped.value("identity_expiry_timestamp_seconds") == 1_700_003_600.0
    assert scraped.value("identity_expiry_warning_seconds") == 900
    assert scraped.value("identities_unusable", reason="refused") == 1
    assert scraped.value("identities_unusable", reason="expired") == 2
    assert scraped.value("identities_unusable", reason="touch") == 0


def test_no_expiry_series_when_nothing_expires() -> None:
    scraped = scrape([ReadinessPart(ScrapeErrors(), lambda: snapshot(State.READY))])
    assert scraped.value("identity_expiry_timestamp_seconds") is None
    assert scraped.value("identities_unusable", reason="not-yet-valid") == 0
