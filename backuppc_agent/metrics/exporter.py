"""The exporter as a supervisor Listener: serves while the supervisor runs.

It keeps the supervisor's latest snapshot (handed over by the loop; a scrape
reads one reference, no lock needed) and builds every metric afresh per
scrape from it, from procfs, the hook store and the master sockets.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.registry import CollectorRegistry

from backuppc_agent import exitcodes
from backuppc_agent.agent import readiness
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError, ConfigError
from backuppc_agent.listen import join_listen
from backuppc_agent.metrics.backuppc import BackupPCPart
from backuppc_agent.metrics.hooks import HookPart
from backuppc_agent.metrics.http import MetricsServer, make_app, tls_context
from backuppc_agent.metrics.masters import MasterPart
from backuppc_agent.metrics.readiness import ReadinessPart
from backuppc_agent.metrics.scrape import Part, ScrapeCollector, ScrapeErrors, SnapshotSource
from backuppc_agent.metrics.swap import SECTIONS, SwapPart
from backuppc_agent.metrics.swapread import PROC, StatVfs
from backuppc_agent.state import Snapshot, State

logger = logging.getLogger(__name__)


class ExporterError(BackupPCAgentError):
    """The metrics endpoint could not listen (port taken, address not local)."""

    exit_code = exitcodes.AGENT_FAILED


class Exporter:
    """Serve /metrics and /ready from the moment it is created until ``close()``.

    Swap is read under ``procfs`` with ``statvfs`` (tests: a fixture tree and its mounts).
    Raises ExporterError if it cannot listen, ConfigError if the TLS files are bad.
    """

    def __init__(self, config: Config, statvfs: StatVfs = os.statvfs, procfs: Path = PROC) -> None:
        self._snapshot: Snapshot | None = None
        self._swap = (statvfs, procfs)
        errors = ScrapeErrors()
        self._collector = ScrapeCollector(self._parts(config, errors), errors)
        registry = CollectorRegistry()
        registry.register(self._collector)
        self._metrics = config.metrics
        self._server = _serve(config, make_app(registry, self.ready))
        scheme = "https" if config.metrics.certfile else "http"
        where = join_listen(*self.address)
        logger.info("metrics on %s://%s/metrics, readiness on /ready", scheme, where)

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the endpoint listens on."""
        return self._server.address

    def snapshot(self) -> Snapshot | None:
        """The supervisor's latest snapshot, or None before the first one."""
        return self._snapshot

    def ready(self) -> tuple[bool, str]:
        """Whether SSH auth is ready, and one line saying why (for /ready)."""
        current = self._snapshot
        if current is None:
            return False, "starting"
        return current.state is State.READY, f"{current.state.value}: {current.reason}"

    def on_snapshot(self, old: Snapshot | None, new: Snapshot) -> None:
        """Keep the newest snapshot for the next scrape."""
        self._snapshot = new

    def on_reload(self, config: Config) -> None:
        """Apply new collector settings; the listen address and TLS need a restart."""
        if config.metrics != self._metrics:
            logger.warning("metrics.listen/certfile/keyfile changed: restart to apply")
        self._collector.parts = tuple(self._parts(config, self._collector.errors))

    def close(self) -> None:
        self._server.close()
        logger.debug("metrics endpoint closed")

    def _parts(self, config: Config, errors: ScrapeErrors) -> list[Part]:
        return build_parts(config, errors, self.snapshot, *self._swap)


def build_parts(
    config: Config,
    errors: ScrapeErrors,
    snapshot: SnapshotSource,
    statvfs: StatVfs = os.statvfs,
    root: Path = PROC,
) -> list[Part]:
    """Every collector part, in exposition order; swap is read under the procfs ``root``."""
    return [
        ReadinessPart(
            errors,
            snapshot,
            config.agent.expiry_warning_seconds,
            functools.partial(readiness.not_counted, config.agent),
        ),
        *(
            SwapPart(errors, name, root, config.swap.top_processes, snapshot, statvfs)
            for name in SECTIONS
        ),
        MasterPart(errors, config.mux.control_dir, config.state.dir),
        HookPart(errors, config.state.dir),
        BackupPCPart(errors, config.backuppc),
    ]


def _serve(config: Config, app: Callable[..., Any]) -> MetricsServer:
    """Start the endpoint; raise ConfigError for bad TLS files, ExporterError if it can't bind."""
    metrics = config.metrics
    tls = None
    if metrics.certfile is not None and metrics.keyfile is not None:
        try:
            tls = tls_context(metrics.certfile, metrics.keyfile)
        except OSError as err:  # ssl.SSLError is an OSError
            raise ConfigError(
                config.source, [f"metrics.certfile, metrics.keyfile: cannot load: {err}"]
            ) from err
    try:
        return MetricsServer(metrics.listen, app, tls)
    except OSError as err:
        raise ExporterError(
            f"cannot serve metrics on {metrics.listen}: {err.strerror or err} "
            "(another supervisor running? change or empty metrics.listen)"
        ) from err
