"""``backuppc-agent env``: the agent's environment for sh, csh or fish."""

from __future__ import annotations

import argparse
import sys

from backuppc_agent import exitcodes
from backuppc_agent.agent import envfile
from backuppc_agent.agent.probe import probe
from backuppc_agent.cli.common import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shell",
        choices=envfile.SHELLS,
        default="sh",
        help="syntax to print (default: sh, as in the env file)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the lines; the agent pid comes from the live socket when it answers."""
    config = load_config(args)
    result = probe(config.agent.socket, config.agent.probe_timeout_seconds)
    pid = result.peer_pid if result.answered else None
    sys.stdout.write(envfile.render(args.shell, config.agent.socket, pid))
    return exitcodes.OK
