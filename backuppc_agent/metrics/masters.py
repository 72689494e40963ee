"""SSH master connections: one control socket per client, checked over the mux protocol.

Each check is one connect and two small frames (about 0.2 ms), never an
``ssh -O check`` subprocess; a wedged master costs at most ``timeout``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.metrics_core import Metric

from backuppc_agent.metrics.scrape import Part, ScrapeErrors, family, gauge
from backuppc_agent.ssh.master import list_masters
from backuppc_agent.ssh.mux import Master
from backuppc_agent.ssh.remote import Answer, remembered_accesses
from backuppc_agent.unixsock import Failure

#: Bound on one master's alive check during a scrape.
CHECK_TIMEOUT_SECONDS = 0.5
#: A dead master leaves a stale socket (or none): normal. Anything else on a control
#: socket (silence, garbage, another user's listener) is a failed read.
_DEAD_MASTER = frozenset({Master.ALIVE, Failure.STALE, Failure.MISSING})


class MasterPart(Part):
    """Live master count; per host (BackupPC's $client): does it answer, since when open."""

    name = "masters"

    def __init__(
        self,
        errors: ScrapeErrors,
        control_dir: Path,
        state_dir: Path | None = None,
        timeout: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(errors)
        self.control_dir = control_dir
        self.state_dir = state_dir
        self.timeout = timeout

    def collect(self) -> Iterator[Metric]:
        """Yield the master families; nothing (and a counted error) if the directory fails."""
        if not self._listable():
            return
        masters = list_masters(self.control_dir, self.timeout)
        for master in masters:
            if master.status not in _DEAD_MASTER:
                self.fail(f"control socket {master.path}: {master.detail}")
        live = sum(1 for master in masters if master.alive)
        yield gauge("masters", "SSH master connections that answer the mux alive check.", live)
        yield family(
            "master_up",
            "1 when the host's master answers on its control socket, 0 for a dead socket.",
            ["host"],
            [([master.client], float(master.alive)) for master in masters],
        )
        yield family(
            "master_opened_timestamp_seconds",
            "When the host's live master was opened (Unix time).",
            ["host"],
            [([m.client], m.opened) for m in masters if m.opened is not None],
        )
        if self.state_dir is not None:
            yield _restricted_family(remembered_accesses(self.state_dir))

    def _listable(self) -> bool:
        """True if the control directory can be read; a missing one just has no masters."""
        try:
            with os.scandir(self.control_dir):
                return True
        except FileNotFoundError:
            return True
        except OSError as err:
            self.fail(f"cannot list {self.control_dir}: {err.strerror}")
            return False


def _restricted_family(accesses: dict[str, tuple[Answer, float]]) -> Metric:
    """backuppc_agent_client_restricted{host}: 1 gate, 0 a login shell, as last probed."""
    return family(
        "client_restricted",
        "1 when the backup key only reaches client-setup's gate on the host, 0 when it gets "
        "a login shell (root on the client), as probed when its master last opened; hosts "
        "with another forced command are left out.",
        ["host"],
        [([client], float(access is Answer.GATE))
         for client, (access, _when) in accesses.items() if access is not Answer.OTHER],
    )  # fmt: skip
