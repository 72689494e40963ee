"""``backuppc-agent doctor``: check the setup, one line per check with a fix.

Runs as root or as the BackupPC user; paths are those of the BackupPC user either way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backuppc_agent import doctor, exitcodes
from backuppc_agent.doctor import checks_agent, checks_backuppc
from backuppc_agent.install import context

CHECKS: list[doctor.Check] = [
    checks_agent.check_running_user,
    checks_agent.check_agent,
    checks_agent.check_restore_key,
    checks_agent.check_paths,
    checks_agent.check_openssh,
    checks_agent.check_control_paths,
    checks_backuppc.check_backuppc_config,
    checks_backuppc.check_access,
    checks_backuppc.check_known_hosts,
    checks_backuppc.check_client_keys,
    checks_backuppc.check_swap,
    checks_agent.check_unlock,
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backuppc-dir",
        metavar="DIR",
        help="BackupPC's config directory (default: [backuppc] conf_dir, /etc/backuppc)",
    )
    parser.add_argument("--procfs", metavar="DIR", default="/proc", help="procfs root")
    parser.add_argument("--sysfs", metavar="DIR", default="/sys", help="sysfs root")


def run(args: argparse.Namespace) -> int:
    """Print one line per finding; 0 if nothing failed, 1 otherwise."""
    ctx = context.load(args.config)
    env = doctor.Env(ctx, ctx.backuppc(args.backuppc_dir), Path(args.procfs), Path(args.sysfs))
    findings = doctor.run_checks(env, CHECKS)
    for finding in findings:
        print(finding.line())
    return exitcodes.NOT_READY if doctor.failed(findings) else exitcodes.OK
