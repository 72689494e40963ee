"""``backuppc-agent wait``: block until SSH auth is ready, or until a timeout."""

from __future__ import annotations

import argparse
import sys

from backuppc_agent import exitcodes
from backuppc_agent.agent import readiness
from backuppc_agent.cli.common import load_config
from backuppc_agent.state import State


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="give up after SECONDS and exit 1 (default: no limit)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 10**9:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1e9")
    return value


def run(args: argparse.Namespace) -> int:
    """Poll the agent until ready (exit 0) or the deadline passes (exit 1)."""
    config = load_config(args)
    ready = readiness.wait_ready(config.agent, args.timeout)
    if ready.state is State.READY:
        return exitcodes.OK
    if not args.quiet:
        line = f"backuppc-agent: not ready after {args.timeout:g} s: {ready.reason}"
        print(line, file=sys.stderr)
    return exitcodes.NOT_READY
