"""Generated BackupPC trees (ConfDir, TopDir, LogDir) for tests and the bench."""

from __future__ import annotations

from pathlib import Path

from backuppc_agent import config
from backuppc_agent.config import BackupPCConfig

#: status.pl as BackupPC 4.4 writes it (Data::Dumper, Indent 1, double quotes)
STATUS_PL = """%Info = (
  "Version" => "4.4.0",
  "startTime" => 1700000000,
  "pool4FileCnt" => 1234,
  "pool4Kb" => 2048,
  "cpool4FileCnt" => 56,
  "cpool4Kb" => "100"
);
%Status = (
{hosts}
);
"""
HOST_STATUS = """  "{name}" => {{
    "state" => "Status_idle",
    "reason" => "{reason}",
    "error" => "{error}",
    "startTime" => 1700000100,
    "endTime" => 1700000200,
    "type" => "full"
  }}"""


def backups_line(number: int, kind: str, start: int, end: int) -> str:
    """One line of pc/HOST/backups with BackupPC 4.4's 22+ fields."""
    rest = ["10", "1000", "5", "500", "5", "500", "0", "0", "0", "0", "3", "0", "0",
            "0", "-1", "0", "rsync", "0", "4.4.0", "", ""]  # fmt: skip
    return "\t".join([str(number), kind, str(start), str(end), *rest]) + "\n"


def make_tree(root: Path, hosts: dict[str, list[tuple[str, int, int]]],
              reasons: dict[str, tuple[str, str]] | None = None,
              main_conf: str = "$Conf{FullPeriod} = 6.97;\n$Conf{IncrPeriod} = 0.97;\n",
              ) -> BackupPCConfig:  # fmt: skip
    """A BackupPC tree at ``root``: hosts with (type, start, end) backups; its [backuppc] config.

    ``reasons`` gives a host's (Reason_*, error) in status.pl; no server runs (run_dir empty).
    """
    conf_dir, top_dir, log_dir, run_dir = (root / d for d in ("etc", "top", "log", "run"))
    for directory in (conf_dir, top_dir / "pc", log_dir, run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    (conf_dir / "hosts").write_text(
        "host        dhcp    user    moreUsers     # <--- do not edit this line\n"
        + "".join(f"{name}\t0\tbackuppc\t# comment\n" for name in hosts)
    )
    (conf_dir / "config.pl").write_text(main_conf + "$Conf{ServerMesgSecret} = '';\n")
    for name, backups in hosts.items():
        (top_dir / "pc" / name).mkdir(exist_ok=True)
        lines = [backups_line(n, kind, start, end) for n, (kind, start, end) in enumerate(backups)]
        (top_dir / "pc" / name / "backups").write_text("".join(lines))
    entries = [
        HOST_STATUS.format(name=name, reason=reason, error=error)
        for name, (reason, error) in (reasons or {}).items()
    ]
    (log_dir / "status.pl").write_text(STATUS_PL.format(hosts=",\n".join(entries)))
    settings = config.from_mapping(
        {"backuppc": {"top_dir": str(top_dir), "conf_dir": str(conf_dir),
                      "log_dir": str(log_dir), "run_dir": str(run_dir)}},
        "test",
    )  # fmt: skip
    return settings.backuppc
