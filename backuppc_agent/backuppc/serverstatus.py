"""One reading of BackupPC's state: its files, and its server's live status when it answers.

Read at every scrape, as user backuppc on the BackupPC server: ConfDir/hosts,
config.pl and each HOST.pl (only a few plain-number settings), each
TopDir/pc/HOST/backups, and the server's ``status info hosts queueLen`` over
its socket (bounded). When the server does not answer, LogDir/status.pl
(written by the server at start, at each wakeup and at shutdown) gives the
last known status. A host whose files cannot be read is skipped and named in
``problems``; nothing here raises for bad data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backuppc_agent.backuppc import hoststatus, perldata, serversock
from backuppc_agent.backuppc.hoststatus import Backups, MalformedError
from backuppc_agent.config import BackupPCConfig
from backuppc_agent.deploy import bpconfig

STATUS_MESSAGE = "status info hosts queueLen"
#: Bound on any one BackupPC file read at a scrape (a backups file of 10,000 dumps is ~1.5 MB).
MAX_FILE_BYTES = 16 * 1024 * 1024
DAY_SECONDS = 86400.0


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


def read_text(path: Path | str) -> str:
    """A BackupPC file's text, at most MAX_FILE_BYTES; raise OSError or MalformedError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not block us
    try:
        chunks = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, 1024 * 1024)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_FILE_BYTES:
        raise MalformedError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8", "replace")


def read(config: BackupPCConfig) -> ServerStatus | None:
    """Read BackupPC's state now; None when this machine has no BackupPC (no hosts file)."""
    try:
        names, refused = hoststatus.parse_hosts(read_text(config.conf_dir / "hosts"))
    except FileNotFoundError:
        return None
    except (OSError, MalformedError) as err:
        return ServerStatus(False, problems=[f"cannot read the hosts file: {_why(err)}"])
    main_conf = _optional_text(config.conf_dir / "config.pl")
    status = _live_status(config, main_conf)
    status.problems.extend(f"{config.conf_dir / 'hosts'}: refused name in {line!r}"
                           for line in refused)  # fmt: skip
    try:
        defaults = _settings(main_conf, HostSettings())
    except MalformedError as err:
        status.problems.append(f"{config.conf_dir / 'config.pl'}: {err}")
        defaults = HostSettings()
    host_files = _host_config_files(config.conf_dir)
    for name in names:
        host = _host(config, name, defaults, status.server_hosts.get(name), status.problems,
                     host_files)  # fmt: skip
        if host is not None:
            status.hosts.append(host)
    return status


def _optional_text(path: Path | str) -> str:
    try:
        return read_text(path)
    except (OSError, MalformedError):
        return ""


def _why(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err)


def _live_status(config: BackupPCConfig, main_conf: str) -> ServerStatus:
    """The server's own answer; else status.pl's last known state (up = False)."""
    secret = serversock.secret_in(main_conf)
    try:
        reply = serversock.query(
            config.run_dir, secret, STATUS_MESSAGE, config.status_timeout_seconds
        )
        return _from_data(True, perldata.parse_statements(reply), "the server's status reply")
    except serversock.ServerError:
        pass
    except perldata.PerlDataError as err:
        return ServerStatus(True, problems=[f"the server's status reply: {err}"])
    path = config.log_dir / "status.pl"
    try:
        return _from_data(False, perldata.parse_statements(read_text(path)), str(path))
    except FileNotFoundError:
        return ServerStatus(False)
    except (OSError, MalformedError, perldata.PerlDataError) as err:
        return ServerStatus(False, problems=[f"{path}: {_why(err)}"])


def _from_data(up: bool, data: dict[str, Any], source: str) -> ServerStatus:
    info, hosts, queues = data.get("Info"), data.get("Status"), data.get("QueueLen", {})
    if not isinstance(info, dict) or not isinstance(hosts, dict) or not isinstance(queues, dict):
        return ServerStatus(up, problems=[f"{source}: no %Info and %Status hashes"])
    return ServerStatus(up, info, queues, hosts)


def _host(
    config: BackupPCConfig,
    name: str,
    defaults: HostSettings,
    status: Any,
    problems: list[str],
    host_files: frozenset[str],
) -> HostStatus | None:
    """One host's files read and parsed, or None (and a problem) if they are unreadable."""
    pc = f"{config.top_dir}/pc/{name}"
    path = f"{pc}/backups"
    try:
        backups = hoststatus.parse_backups(read_text(path))
    except FileNotFoundError:
        backups = hoststatus.parse_backups("")  # never backed up
    except (OSError, MalformedError) as err:
        problems.append(f"{path}: {_why(err)}")
        return None
    try:
        settings = _settings(_host_config(config, name, pc, host_files), defaults)
    except MalformedError as err:
        problems.append(f"{name}'s config: {err}")
        settings = defaults
    period = settings.period_seconds(config.default_period_hours * 3600)
    return HostStatus(name, backups, settings, status if isinstance(status, dict) else {}, period)


def _host_config_files(conf_dir: Path) -> frozenset[str]:
    """The HOST.pl names in ConfDir, listed once per scrape (most hosts have none)."""
    try:
        return frozenset(name for name in os.listdir(conf_dir) if name.endswith(".pl"))  # noqa: PTH208  (names only: the hot path of a scrape)
    except OSError:
        return frozenset()


def _host_config(config: BackupPCConfig, name: str, pc: str, host_files: frozenset[str]) -> str:
    """The host's own config text, where BackupPC looks for it (non-FHS layout)."""
    old_style = f"{pc}/config.pl"
    if os.path.isfile(old_style):  # noqa: PTH113  (a str path: 500 hosts per scrape)
        return _optional_text(old_style)
    if f"{name}.pl" not in host_files:
        return ""
    return _optional_text(f"{config.conf_dir}/{name}.pl")


def _settings(text: str, base: HostSettings) -> HostSettings:
    """``base`` with what ``text`` sets as plain numbers; raise MalformedError."""
    settings = bpconfig.assignments(text)
    values = {
        key: hoststatus.config_number(settings, name)
        for key, name in (("full_days", "FullPeriod"), ("incr_days", "IncrPeriod"),
                          ("disable", "BackupsDisable"))
    }  # fmt: skip
    return HostSettings(**{
        key: getattr(base, key) if value is None else value for key, value in values.items()
    })  # fmt: skip
