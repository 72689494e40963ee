"""Readiness metrics from the supervisor's latest snapshot (no I/O at scrape time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from backuppc_agent import __version__
from backuppc_agent.agent import signing, unlock
from backuppc_agent.agent.certs import Validity
from backuppc_agent.metrics.scrape import PREFIX, Part, ScrapeErrors, SnapshotSource, family, gauge
from backuppc_agent.state import Snapshot, State

#: Why a key that counts cannot be used: a sign check's label, then certificate validity.
UNUSABLE = (*signing.LABELS, *(v.value for v in Validity if v is not Validity.VALID))


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
        yield family("build_info", "The running backuppc-agent version (always 1).",
                     ["version"], [([__version__], 1)])  # fmt: skip
        current = self.snapshot()
        state = current.state if current else None
        yield gauge("ready", "1 when SSH authentication is ready (keys loaded), else 0.",
                    float(state is State.READY))  # fmt: skip
        yield family("state", "1 for the current readiness state, 0 for the others.", ["state"],
                     (([each.value], float(each is state)) for each in State))  # fmt: skip
        if current is not None:
            yield from _agent(current)
            yield from self._keys(current)

    def _keys(self, current: Snapshot) -> Iterator[Metric]:
        """Unusable keys by reason, when identities expire, whether the restore key is armed."""
        yield family(
            "identities_unusable",
            "Keys that count for readiness but cannot be used, by reason "
            "(refused: confirm or restricted; touch: FIDO; expired/not-yet-valid: certificate).",
            ["reason"],
            (([why], sum(1 for _fp, was in current.unusable if was == why)) for why in UNUSABLE),
        )
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


def _agent(current: Snapshot) -> Iterator[Metric]:
    """Keys loaded, since when, whether the agent answers, its restarts, unattended unlock."""
    yield gauge("identities", "Keys loaded in the ssh-agent.", current.identities)
    yield gauge(
        "state_since_timestamp_seconds", "When the current state began (Unix time).", current.since
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
