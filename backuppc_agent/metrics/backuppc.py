"""BackupPC's own host status, read at scrape time from its files and its server.

BackupPC 4.4's metrics page cannot be scraped (a sample without a value for a
host with no incremental makes Prometheus drop the whole page, upstream issue
#516; full_age holds a start time; it sits behind the CGI's basic auth). The
supervisor runs as backuppc on the BackupPC server, so this part reads the
same sources BackupPC's pages do (serverstatus) and exports them with
``host`` labels, timestamps rather than ages, and bounded label values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from backuppc_agent import exitcodes
from backuppc_agent.backuppc import serverstatus
from backuppc_agent.backuppc.serverstatus import HostStatus, ServerStatus
from backuppc_agent.config import BackupPCConfig
from backuppc_agent.metrics.scrape import Part, ScrapeErrors, family, gauge

NAME = "backuppc_"
#: (queue label, key of the server's %QueueLen)
QUEUES = (("background", "BgQueue"), ("user", "UserQueue"), ("command", "CmdQueue"))
#: (pool label, key prefix in %Info): BackupPC 4's pool and cpool, filled by BackupPC_nightly
POOLS = (("pool", "pool4"), ("cpool", "cpool4"))
COUNTED_TYPES = ("full", "incr", "partial")
#: What the server does for a host now (BackupPC's Status_* words, shortened).
STATES = frozenset({"idle", "backup-starting", "backup-in-progress", "restore-starting",
                    "restore-in-progress", "archive-in-progress", "admin-pending",
                    "admin-running", "link-pending", "link-running"})  # fmt: skip
#: How the last attempt ended (BackupPC's Reason_* words), plus "aborted", "none", "other".
RESULTS = frozenset({"done", "failed", "aborted", "no-ping", "canceled", "idle", "none",
                     "restore-done", "restore-failed", "restore-canceled", "archive-done",
                     "archive-failed", "archive-canceled", "other"})  # fmt: skip
_REASONS = {"backup_done": "done", "backup_failed": "failed", "no_ping": "no-ping",
            "backup_canceled_by_user": "canceled", "nothing_to_do": "idle",
            "restore_canceled_by_user": "restore-canceled",
            "archive_canceled_by_user": "archive-canceled"}  # fmt: skip
#: A pre hook's exit code (DumpPreUserCmd returned error status CODE*256) -> error word.
_HOOK_EXITS = {exitcodes.HOOK_NOT_READY: "keys-not-loaded",
               exitcodes.HOOK_SSH_FAILED: "ssh-master-failed",
               exitcodes.BAD_NAME: "bad-name"}  # fmt: skip
_PRE_COMMAND = re.compile(r"(?:Dump|Restore|Archive)PreUserCmd returned error status (\d+)")
_ERROR_WORDS = (
    (re.compile(r"aborted by user"), "aborted-by-user"),
    (re.compile(r"aborted|signal=", re.I), "aborted"),
    (re.compile(r"^(?:no ping|ping too slow|host not found)"), "no-ping"),
    (re.compile(r"No files dumped for share"), "no-files"),
    (re.compile(r"PostUserCmd returned error"), "post-command-failed"),
    (re.compile(r"rsync|[Tt]ar exited|smbclient|fileListReceive|fatal error"), "transfer-failed"),
)  # fmt: skip
#: Per-host families (name after ``backuppc_agent_backuppc_``, help, labels after ``host``).
HOST_FAMILIES = (
    ("last_backup_end_timestamp_seconds",
     "When the host's last good (full or incremental) backup ended (Unix time).", ()),
    ("last_backup_number", "Number of the host's last good backup.", ()),
    ("last_backup_type", "1 for the type (full, incr) of the last good backup.", ("type",)),
    ("backups", "Backups kept for the host, by type.", ("type",)),
    ("last_attempt_info",
     ("The host's last attempt: result (done, failed, aborted, no-ping, ...) and "
      "error (keys-not-loaded, transfer-failed, ...) as bounded words; always 1."),
     ("result", "error")),
    ("last_attempt_timestamp_seconds",
     "When the host's last attempt started (or its idle check ran; Unix time).", ()),
    ("host_state_info", "What the server does for the host now; always 1.", ("state",)),
    ("host_backups_disabled", "BackupsDisable: 0 scheduled backups, 1 manual only, 2 none.", ()),
    ("host_backup_period_seconds",
     ("How often BackupPC backs the host up (the shorter of FullPeriod and IncrPeriod, "
      "or [backuppc] default_period_hours)."), ()),
)  # fmt: skip


class BackupPCPart(Part):
    """Per server: up, queues, pool; per host: last good backup, backups kept, last attempt."""

    name = "backuppc"

    def __init__(self, errors: ScrapeErrors, config: BackupPCConfig) -> None:
        super().__init__(errors)
        self.config = config

    def collect(self) -> Iterator[Metric]:
        """Yield the BackupPC families; nothing at all on a machine without BackupPC."""
        status = serverstatus.read(self.config)
        if status is None:
            return
        for problem in status.problems:
            self.fail(problem)
        yield from _server(status)
        yield from _hosts(status.hosts, live=status.up)


def _server(status: ServerStatus) -> Iterator[Metric]:
    yield gauge(
        "backuppc_up",
        "1 when the BackupPC server answered its status request at this scrape.",
        float(status.up),
    )
    yield gauge("backuppc_hosts", "Hosts in BackupPC's hosts file.", len(status.hosts))
    if status.up and isinstance(status.info.get("startTime"), int):
        yield gauge(
            "backuppc_server_start_timestamp_seconds",
            "When the BackupPC server started (Unix time).",
            status.info["startTime"],
        )
    if status.up:
        queues = [([label], _number(status.queues.get(key))) for label, key in QUEUES]
        yield family(NAME + "queue_length", "Jobs waiting in a BackupPC server queue.", ["queue"],
                     queues)  # fmt: skip
    yield from _pools(status.info)


def _pools(info: dict[str, object]) -> Iterator[Metric]:
    """Pool size and files, as BackupPC_nightly last counted them (absent before its first run)."""
    pools = [(label, key) for label, key in POOLS if f"{key}FileCnt" in info]
    sizes = [([label], _number(info.get(f"{key}Kb")) * 1024) for label, key in pools]
    files = [([label], _number(info.get(f"{key}FileCnt"))) for label, key in pools]
    yield family(NAME + "pool_bytes", "Size of a BackupPC pool (last nightly count).", ["pool"],
                 sizes)  # fmt: skip
    yield family(NAME + "pool_files", "Files in a BackupPC pool (last nightly count).", ["pool"],
                 files)  # fmt: skip


def _number(value: object) -> float:
    """A number BackupPC wrote (maybe as a string); 0 for anything else."""
    try:
        return float(str(value))
    except ValueError:
        return 0.0


def _hosts(hosts: list[HostStatus], live: bool) -> Iterator[Metric]:
    """The HOST_FAMILIES; what the server does now only from a server that answered."""
    samples: dict[str, list[tuple[list[str], float]]] = {name: [] for name, *_ in HOST_FAMILIES}
    for host in hosts:
        for name, labels, value in _host_samples(host, live):
            samples[name].append(([host.name, *labels], value))
    for name, doc, labels in HOST_FAMILIES:
        yield family(NAME + name, doc, ["host", *labels], samples[name])


def _host_samples(host: HostStatus, live: bool) -> Iterator[tuple[str, tuple[str, ...], float]]:
    """One host's samples as (family, labels after host, value)."""
    backups, status = host.backups, host.status
    if backups.last_end is not None and backups.last_type is not None:
        yield "last_backup_end_timestamp_seconds", (), backups.last_end
        yield "last_backup_number", (), float(backups.last_number or 0)
        for kind in ("full", "incr"):
            yield "last_backup_type", (kind,), float(kind == backups.last_type)
    for kind in COUNTED_TYPES:
        yield "backups", (kind,), backups.counts.get(kind, 0)
    result = result_word(status.get("reason"), status.get("error"))
    yield "last_attempt_info", (result, error_word(status.get("error"))), 1
    if isinstance(status.get("startTime"), int):
        yield "last_attempt_timestamp_seconds", (), status["startTime"]
    if live and status:
        yield "host_state_info", (state_word(status.get("state")),), 1
    yield "host_backups_disabled", (), host.settings.disabled()
    yield "host_backup_period_seconds", (), host.period_seconds


def state_word(state: object) -> str:
    """BackupPC's Status_* word for what it does now -> a STATES word, or "other"."""
    word = str(state or "").removeprefix("Status_").replace("_", "-")
    return word if word in STATES else "other"


def result_word(reason: object, error: object) -> str:
    """BackupPC's Reason_* word (and error) for the last attempt -> a RESULTS word."""
    text = str(reason or "")
    if not text:
        return "none"
    name = text.removeprefix("Reason_")
    word = _REASONS.get(name, name.replace("_", "-"))
    if word == "failed" and error_word(error).startswith("aborted"):
        return "aborted"
    return word if word in RESULTS else "other"


def error_word(error: object) -> str:
    """BackupPC's free-text error of the last attempt -> one of a few words ("none" if none)."""
    text = str(error or "")
    if not text:
        return "none"
    pre = _PRE_COMMAND.search(text)
    if pre:
        return _HOOK_EXITS.get(int(pre.group(1)) >> 8, "pre-command-failed")
    for pattern, word in _ERROR_WORDS:
        if pattern.search(text):
            return word
    return "other"
