"""``backuppc-agent backuppc-config``: print the lines to add to BackupPC's config.pl."""

from __future__ import annotations

import argparse
import os
import sys

from backuppc_agent import exitcodes
from backuppc_agent.backuppc import snippets
from backuppc_agent.cli.common import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--user", default="root", help="the account BackupPC logs in as on clients (default root)"
    )
    parser.add_argument(
        "--gate",
        choices=("hooks", "ping"),
        default="hooks",
        help="hooks (default): not ready fails the job; ping: also gate in PingCmd ('no ping')",
    )
    parser.add_argument(
        "--program", metavar="PATH", help="the backuppc-agent BackupPC runs (default: this one)"
    )


def run(args: argparse.Namespace) -> int:
    """Print the config.pl lines; every command carries --config PATH when it was given."""
    config = load_config(args)
    config_path = os.path.abspath(args.config) if args.config else None  # noqa: PTH100
    program = snippets.program_words(args.program)
    text = snippets.render(config, program, config_path, args.user, args.gate)
    sys.stdout.write(text)
    return exitcodes.OK
