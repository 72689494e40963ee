"""``backuppc-agent add [ssh-add args]``: ssh-add against the supervised agent."""

from __future__ import annotations

import argparse
import os
import sys

from backuppc_agent import exitcodes, proc
from backuppc_agent.agent import readiness
from backuppc_agent.cli.common import load_config

SETTLE_SECONDS = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Everything after ``add`` goes to ssh-add unchanged (main() splits it off)."""
    parser.usage = "backuppc-agent [--config PATH] add [ssh-add arguments ...]"
    parser.epilog = "Global options go before 'add': everything after it is ssh-add's."


def run(args: argparse.Namespace) -> int:
    """Run ssh-add with SSH_AUTH_SOCK set, then report the resulting readiness."""
    config = load_config(args)
    env = dict(os.environ)
    env["SSH_AUTH_SOCK"] = str(config.agent.socket)
    env.pop("SSH_AGENT_PID", None)
    status = proc.run_interactive(("ssh-add", *args.ssh_add_args), env)
    if status != 0:
        return status
    # A moment for the agent to settle, so the report reflects what ssh-add just did.
    ready = readiness.wait_ready(config.agent, SETTLE_SECONDS)
    print(f"backuppc-agent: {ready.state.value}: {ready.reason}", file=sys.stderr)
    return exitcodes.OK
