"""Readiness metrics from the supervisor's latest snapshot (no I/O at scrape time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from backuppc_agent import __version__
from backuppc_agent.agent import signing, unlock
from backuppc_agent.agent.certs import Validity
from backuppc_agent.metrics.scrape import PREFIX, Part, ScrapeErrors, SnapshotSource, gauge
from backuppc_agent.state import Snapshot, State

#: Why a key that counts cannot be used: a sign check's label, then certificate validity.
UNUSABLE_REASONS = (*signing.LABELS, *(v.value for v in Validity if v is not Validity.VALID))


class ReadinessPart(Part):
    """backuppc_agent_ready, _state{state}, identities, since, agent up and restarts."""

    name = "readiness"

    def __init__(
        self,
        errors: ScrapeErrors,
        snapshot: SnapshotSource,
        expiry_warning_seconds: float = 3600,
        restore_keys: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        super().__init__(errors)
        self.snapshot = snapshot
        self.expiry_warning_seconds = expiry_warning_seconds
        #: the restore key's fingerprint once it is set up (readiness.not_counted)
        self.restore_keys = restore_keys

    def collect(self) -> Iterator[Metric]:
        """Yield the readiness families; before the first snapshot only ready=0 and build info."""
        yield _build_info()
        current = self.snapshot()
        ready = current is not None and current.state is State.READY
        yield gauge(
            "ready", "1 when SSH authentication is ready (keys loaded), else 0.", float(ready)
        )
        yield _state_family(current.state if current else None)
        if current is None:
            return
        yield gauge("identities", "Keys loaded in the ssh-agent.", current.identities)
        yield gauge(
            "state_since_timestamp_seconds",
            "When the current state began (Unix time).",
            current.since,
        )
        yield gauge(
            "ssh_agent_up", "1 when the ssh-agent answers on its socket.", float(current.agent_up)
        )
        yield CounterMetricFamily(
            PREFIX + "ssh_agent_restarts_total",
            "Times the supervisor restarted a lost ssh-agent (its keys were lost each time).",
            value=current.agent_restarts,
        )
        yield gauge(
            "unlock_waiting_tang",
            "1 while unattended unlock waits because no Tang server answers, else 0.",
            float(current.unlock_waiting == unlock.WAITING_TANG),
        )
        yield gauge(
            "unlock_tang_refused",
            "1 while Tang answers but cannot open the stored passphrase (rekey it), else 0.",
            float(current.unlock_waiting == unlock.REFUSED_TANG),
        )
        yield from self._expiry(current)
        restore = self.restore_keys()
        yield gauge(
            "restore_key_set_up",
            "1 once agent.restore_key exists: restores need it, backups never use it.",
            float(bool(restore)),
        )
        yield gauge(
            "restore_armed",
            "1 while the restore key is loaded in the agent (restores can write), else 0.",
            float(bool(restore & set(current.fingerprints))),
        )

    def _expiry(self, current: Snapshot) -> Iterator[Metric]:
        """Unusable keys by reason, when identities expire and how early to warn."""
        yield _unusable_family(current.unusable)
        yield gauge(
            "identity_expiry_warning_seconds",
            "How long before identity_expiry_timestamp_seconds the expiry alert fires "
            "(agent.expiry_warning_seconds).",
            self.expiry_warning_seconds,
        )
        if current.expires is not None:
            yield gauge(
                "identity_expiry_timestamp_seconds",
                "When the first required identity (or, with none required, the last "
                "identity) expires: certificate valid_before or agent lifetime (Unix time).",
                current.expires,
            )


def _unusable_family(unusable: tuple[tuple[str, str], ...]) -> GaugeMetricFamily:
    """backuppc_agent_identities_unusable{reason}: keys that count but cannot be used."""
    family = GaugeMetricFamily(
        PREFIX + "identities_unusable",
        "Keys that count for readiness but cannot be used, by reason "
        "(refused: confirm or restricted; touch: FIDO; expired/not-yet-valid: certificate).",
        labels=["reason"],
    )
    for reason in UNUSABLE_REASONS:
        family.add_metric([reason], sum(1 for _fp, why in unusable if why == reason))
    return family


def _state_family(current: State | None) -> GaugeMetricFamily:
    """backuppc_agent_state: 1 for ``current``, 0 for every other state."""
    family = GaugeMetricFamily(
        PREFIX + "state", "1 for the current readiness state, 0 for the others.", labels=["state"]
    )
    for candidate in State:
        family.add_metric([candidate.value], 1 if candidate is current else 0)
    return family


def _build_info() -> GaugeMetricFamily:
    """backuppc_agent_build_info{version} = 1."""
    family = GaugeMetricFamily(
        PREFIX + "build_info", "The running backuppc-agent version (always 1).", labels=["version"]
    )
    family.add_metric([__version__], 1)
    return family
