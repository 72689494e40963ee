"""One reading of BackupPC's state at each scrape: its files, and its server's live status.

The server's ``status info hosts queueLen``, else LogDir/status.pl (written at start,
each wakeup, shutdown). A host whose files cannot be read, or whose name BackupPC_dump
refuses, is skipped and named in ``problems``; nothing here raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from backuppc_agent.backuppc import confdir, perldata, serversock
from backuppc_agent.backuppc.confdir import ConfDir, MalformedError, read_text
from backuppc_agent.config import BackupPCConfig

STATUS_MESSAGE = "status info hosts queueLen"
DAY_SECONDS = 86400.0
#: The backup types in a backups file; "active" is a dump still running.
BACKUP_TYPES = ("full", "incr", "partial", "active")
#: HostSettings' fields and the $Conf settings they come from.
_NUMBERS = {"full_days": "FullPeriod", "incr_days": "IncrPeriod", "disable": "BackupsDisable"}
_BACKUP_LINE = re.compile(r"(\d+)\t(full|incr|partial|active)\t(\d+)\t(\d*)(?:\t|$)")


@dataclass(frozen=True)
class Backups:
    """One host's backups file, summed up."""

    counts: dict[str, int]
    #: the full or incr backup with the latest start, as BackupPC's summary page picks it
    last_number: int | None = None
    last_type: str | None = None
    last_end: float | None = None


def parse_backups(text: str) -> Backups:
    """TopDir/pc/HOST/backups -> Backups; raise MalformedError on a line BackupPC never writes."""
    counts = dict.fromkeys(BACKUP_TYPES, 0)
    last: tuple[int, int, str, float] | None = None
    for line in text.splitlines():
        if not line:
            continue
        match = _BACKUP_LINE.match(line)
        # only a finished full or incr is sure to have an end time: BackupPC 4.4
        # keeps a stopped dump as "partial" with its end time (and sizes) empty
        if match is None or (match.group(2) in ("full", "incr") and not match.group(4)):
            raise MalformedError(f"malformed backups line {line[:80]!r}")
        number, kind, start, end = match.groups()
        counts[kind] += 1
        if kind in ("full", "incr") and (last is None or int(start) > last[0]):
            last = (int(start), int(number), kind, float(end))
    return Backups(counts, *last[1:]) if last else Backups(counts)


@dataclass(frozen=True)
class HostSettings:
    """The few settings of a host the metrics need, config.pl overridden by HOST.pl."""

    full_days: float | None = None
    incr_days: float | None = None
    #: $Conf{BackupsDisable}: 0 scheduled, 1 manual only, 2 none
    disable: float | None = None

    def period_seconds(self, default: float) -> float:
        """How often BackupPC backs the host up: the shorter positive period, else ``default``."""
        periods = [days * DAY_SECONDS for days in (self.full_days, self.incr_days)
                   if days is not None and days > 0]  # fmt: skip
        return min(periods) if periods else default

    def disabled(self) -> int:
        """BackupsDisable, or BackupPC 3's FullPeriod -1 (manual only) / -2 (none)."""
        if self.disable is not None:
            return int(self.disable)
        if self.full_days is not None and self.full_days < 0:
            return 1 if self.full_days == -1 else 2
        return 0


@dataclass(frozen=True)
class HostStatus:
    """What the exporter shows for one host."""

    name: str
    backups: Backups
    settings: HostSettings
    #: the server's %Status entry (empty if it has none)
    status: dict[str, Any]
    period_seconds: float


@dataclass
class ServerStatus:
    """BackupPC as read now; ``problems`` are counted as scrape errors."""

    up: bool
    info: dict[str, Any] = field(default_factory=dict)
    queues: dict[str, Any] = field(default_factory=dict)
    #: the server's %Status: host -> its status hash
    server_hosts: dict[str, Any] = field(default_factory=dict)
    hosts: list[HostStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read(config: BackupPCConfig) -> ServerStatus | None:
    """Read BackupPC's state now; None when this machine has no BackupPC (no hosts file)."""
    files = ConfDir(config.conf_dir, config.top_dir)
    try:
        hosts = files.hosts()
    except MalformedError as err:
        return ServerStatus(False, problems=[f"cannot read the hosts file: {err}"])
    if hosts is None:
        return None
    main: dict[str, str] = {}
    defaults, problems = HostSettings(), []
    try:
        main = files.main() or {}
        defaults = _settings(main, defaults)
    except MalformedError as err:
        problems.append(f"config.pl: {err}")
    status = _live_status(config, confdir.server_secret(main))
    status.problems += problems
    for name in hosts:
        host = _host(config, files, name, defaults, status)
        if host is not None:
            status.hosts.append(host)
    return status


def _live_status(config: BackupPCConfig, secret: str) -> ServerStatus:
    """The server's own answer; else status.pl's last known state (up = False)."""
    try:
        timeout = config.status_timeout_seconds
        reply = serversock.query(config.run_dir, secret, STATUS_MESSAGE, timeout)
    except serversock.ServerError:
        pass
    else:
        return _from_text(True, reply, "the server's status reply")
    path = config.log_dir / "status.pl"
    try:
        text = read_text(path)
    except MalformedError as err:
        return ServerStatus(False, problems=[str(err)])
    return ServerStatus(False) if text is None else _from_text(False, text, str(path))


def _from_text(up: bool, text: str, source: str) -> ServerStatus:
    """The %Info, %Status and %QueueLen of Data::Dumper text, or a problem."""
    try:
        data = perldata.parse_statements(text)
    except perldata.PerlDataError as err:
        return ServerStatus(up, problems=[f"{source}: {err}"])
    info, hosts, queues = data.get("Info"), data.get("Status"), data.get("QueueLen", {})
    if not isinstance(info, dict) or not isinstance(hosts, dict) or not isinstance(queues, dict):
        return ServerStatus(up, problems=[f"{source}: no %Info and %Status hashes"])
    return ServerStatus(up, info, queues, hosts)


def _host(
    config: BackupPCConfig, files: ConfDir, name: str, defaults: HostSettings, server: ServerStatus
) -> HostStatus | None:
    """One host's files read and parsed, or None (and a problem) if they are unreadable."""
    if not confdir.usable(name):
        server.problems.append(f"{config.conf_dir / 'hosts'}: refused host name {name[:80]!r}")
        return None
    try:
        text = read_text(f"{config.top_dir}/pc/{name}/backups")
        backups = parse_backups(text or "")  # none: never backed up
    except MalformedError as err:
        server.problems.append(str(err))
        return None
    try:
        settings = _settings(files.settings(name, base={}), defaults)
    except MalformedError as err:
        server.problems.append(f"{name}'s config: {err}")
        settings = defaults
    status = server.server_hosts.get(name)
    period = settings.period_seconds(config.default_period_hours * 3600)
    return HostStatus(name, backups, settings, status if isinstance(status, dict) else {}, period)


def _settings(settings: dict[str, str], base: HostSettings) -> HostSettings:
    """``base`` with what ``settings`` set to plain numbers; raise MalformedError."""
    values = {key: confdir.config_number(settings, name) for key, name in _NUMBERS.items()}
    return replace(base, **{key: value for key, value in values.items() if value is not None})
