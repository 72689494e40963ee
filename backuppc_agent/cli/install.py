"""``backuppc-agent install [--dry-run]``: put config, ssh_config, service files in place.

Exit 0 when everything is in place; 1 when a file needs merging by hand, BackupPC
is missing, or the BackupPC user cannot run the program or read a file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from backuppc_agent import exitcodes
from backuppc_agent.install import access, context, plan, targets, templates
from backuppc_agent.install.plan import Action

PROGRAM = "backuppc-agent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would change (unified diffs), write nothing",
    )
    parser.add_argument(
        "--init",
        choices=("auto", *targets.INITS),
        default="auto",
        help="service manager (default: supervisord if installed, else systemd if running, "
        "else sysvinit)",
    )
    parser.add_argument(
        "--program", metavar="PATH", help="the backuppc-agent the services run (default: this one)"
    )
    parser.add_argument(
        "--client-user",
        default=targets.CLIENT_LOGIN_USER,
        help="the account BackupPC logs in as on clients (default root)",
    )
    parser.add_argument(
        "--root", metavar="DIR", default="/", help="install into DIR instead of / (for testing)"
    )


def default_program() -> str:
    """The backuppc-agent that is running now, else the one on PATH, else Debian's."""
    running = Path(sys.argv[0])
    if running.name == PROGRAM and running.exists():
        return str(running.absolute())
    return shutil.which(PROGRAM) or templates.SHIPPED.program


def run(args: argparse.Namespace) -> int:
    """Plan, report (with diffs on --dry-run), apply; return 0 or 1."""
    ctx = context.load(args.config, Path(args.root).absolute())
    init = targets.detect_init(ctx) if args.init == "auto" else args.init
    vals = targets.values(ctx, args.program or default_program())
    if ctx.root == Path("/") and _refused(ctx, vals.program):
        return exitcodes.NOT_READY
    wanted = targets.common_targets(ctx, vals, args.client_user) + targets.init_targets(init, vals)
    steps = [plan.plan_target(ctx, target) for target in wanted]
    dirs = targets.missing_dirs(ctx)
    _report(steps, dirs, args.dry_run)
    if not args.dry_run:
        plan.apply(ctx, steps, dirs)
        _next_steps(init, ctx.user.pw_name, steps)
    config_pl = ctx.under(targets.BACKUPPC_CONFIG)
    if not config_pl.exists():
        print(
            f"backuppc-agent: {config_pl} not found: is BackupPC installed? "
            "(its lines: backuppc-agent backuppc-config)",
            file=sys.stderr,
        )
    conflicts = any(step.action is Action.CONFLICT for step in steps)
    return exitcodes.NOT_READY if conflicts or not config_pl.exists() else exitcodes.OK


def _refused(ctx: context.Context, program: str) -> bool:
    """Print what the BackupPC user cannot run or read (one line each); True if anything."""
    found = access.problems(ctx.user, program, ctx.config_path, ctx.config)
    for problem in found:
        print(f"backuppc-agent: refused, nothing written: {problem.line()}", file=sys.stderr)
    return bool(found)


def _report(steps: list[plan.Step], dirs: dict[Path, str], dry_run: bool) -> None:
    verb = "would mkdir" if dry_run else "mkdir"
    for directory, what in dirs.items():
        print(f"{verb:<10} {directory} ({what}, 0700)")
    for step in steps:
        print(plan.describe(step, dry_run))
        if dry_run:
            sys.stdout.write(plan.diff(step))


def _next_steps(init: str, user: str, steps: list[plan.Step]) -> None:
    if not any(step.writes for step in steps):
        return
    print("next:")
    for line in targets.NEXT_STEPS[init]:
        print(f"  {line}")
    print(f"  su - {user}   # then: ssh-add\n  backuppc-agent doctor")
