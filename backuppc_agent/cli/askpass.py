"""``backuppc-agent askpass [PROMPT]`` (hidden): the askpass helper, as a subcommand.

ssh-add runs ``backuppc-agent-askpass`` (SSH_ASKPASS takes no arguments of our
own); this subcommand is the same code, for tests and by-hand checks.
"""

from __future__ import annotations

import argparse
import sys

from backuppc_agent import askpass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The prompt ssh-add passes is accepted and ignored."""
    parser.add_argument("prompt", nargs="?", default="", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Copy one line from stdin to stdout; exit 1 if there is none."""
    return askpass.answer(sys.stdin.fileno(), sys.stdout.fileno())
