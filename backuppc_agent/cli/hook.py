"""``backuppc-agent hook HOOK``: BackupPC's pre/post user commands (and the ping gate).

Exit codes (pre hooks and ping): 0 ready (and the master is up), 5 not ready
(ping: 1, BackupPC's "no ping"), 6 the master could not be opened, 7 a refused
name. Post hooks always exit 0: a non-zero post command marks a good backup
failed. Every line printed starts with "backuppc-agent: " (BackupPC's XferLOG).
"""

from __future__ import annotations

import argparse
import sys

from backuppc_agent import exitcodes
from backuppc_agent.backuppc import hooks
from backuppc_agent.cli.common import load_config
from backuppc_agent.config import Config

PREFIX = "backuppc-agent: "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "hook",
        choices=hooks.HOOKS,
        metavar="HOOK",
        help=f"which user command this is: {', '.join(hooks.HOOKS)}",
    )
    for option, text in (
        ("--client", "$client: BackupPC's host name"),
        ("--host", "$host: the address to connect to"),
        ("--host-ip", "$hostIP (accepted, unused)"),
        ("--type", "$type (accepted, unused)"),
        ("--xfer-ok", "$xferOK: 1 if the transfer succeeded"),
        ("--xfer-method", "$XferMethod: not gated without ssh (rsyncd, smb, ftp, a local tar)"),
        ("--share", "$share (accepted, unused)"),
    ):
        parser.add_argument(option, default="", help=text)


def _say(lines: tuple[str, ...] | list[str]) -> None:
    for line in lines:
        sys.stdout.write(PREFIX + line.replace("\n", " ") + "\n")
    sys.stdout.flush()


def _outcome(args: argparse.Namespace, config: Config) -> hooks.Outcome:
    host = args.host or args.client
    if args.hook == "ping":
        return hooks.ping_gate(config, host)
    if args.hook in hooks.PRE_HOOKS:
        return hooks.pre_hook(config, args.hook, args.client, host, args.xfer_method)
    return hooks.post_hook(config, args.hook, args.client, args.xfer_ok, args.xfer_method)


def _record(config: Config, hook: str, outcome: hooks.Outcome) -> None:
    problem = hooks.record(config, hook, outcome)
    if problem:
        _say([f"this hook run was not recorded: {problem}"])


def run(args: argparse.Namespace) -> int:
    """Run the hook, print its lines, record it; return the documented exit code.

    An unexpected failure is recorded as "error" (if the config, where the store is,
    loaded), then raised by a pre hook, printed by a post hook (it never fails a backup).
    """
    post = args.hook in hooks.POST_HOOKS
    try:
        config = load_config(args)
        try:
            outcome = _outcome(args, config)
        except Exception:
            _record(config, args.hook, hooks.Outcome("error", 0, (), 0.0, args.client))
            raise
    except Exception as err:
        if not post:
            raise
        _say([f"{args.hook}: {err} (post hooks never fail a backup)"])
        return exitcodes.OK
    _say(outcome.lines)
    _record(config, args.hook, outcome)
    return exitcodes.OK if post else outcome.exit_code
